"""ECS's own strategies (BLUE_GREEN, LINEAR, CANARY) and the service-deployment statuses, driven by
the scheduler once per tick (`sync`, `drive`).

A native deployment starts the new (green) revision's full desired count in the target group that
does not take production traffic, points the test listener rule at it, shifts the production
listener rule's forward weights (all at once, in `stepPercent` steps, or `canaryPercent` then the
rest, with the step/canary bake time between), bakes for `bakeTimeInMinutes`, then stops the old
(blue) tasks. Minutes are `Timing.minute_s` seconds here. At any point a CloudWatch alarm in ALARM
(with `alarms.enable` and `rollback`), the circuit breaker's threshold of failed green tasks, a
lifecycle hook that fails or times out with ROLLBACK, or StopServiceDeployment rolls it back:
traffic returns to blue, the old deployment is PRIMARY again and the normal reconcile stops the
green tasks. Lifecycle hooks of type PAUSE wait for ContinueServiceDeployment; AWS_LAMBDA hooks
cannot run here and are recorded as SUCCEEDED (an event says so).
"""

from __future__ import annotations

import random
import string
from datetime import timedelta
from typing import Any

import structlog

from devstack.aws import ecs_model, sdeploys, traffic
from devstack.aws.ecs_model import add_event
from devstack.aws.sdeploys import Record

log = structlog.get_logger("devstack.aws.native")

_PROD_GROUP_ATTR = "_devstack_production_group"
_GROUPS_ATTR = "_devstack_deployment_groups"
_LIVE = ("PROVISIONING", "PENDING", "RUNNING")
_GOING = ("IN_PROGRESS", "ROLLBACK_REQUESTED")
# (lifecycleStage shown, hook stage run there or None, what happens) in order.
_SEQUENCE: list[tuple[str, str | None, str]] = [
    ("RECONCILE_SERVICE", "RECONCILE_SERVICE", ""),
    ("PRE_SCALE_UP", "PRE_SCALE_UP", ""),
    ("SCALE_UP", None, "scale_up"),
    ("POST_SCALE_UP", "POST_SCALE_UP", ""),
    ("TEST_TRAFFIC_SHIFT", "TEST_TRAFFIC_SHIFT", "test_shift"),
    ("POST_TEST_TRAFFIC_SHIFT", "POST_TEST_TRAFFIC_SHIFT", ""),
    ("PRODUCTION_TRAFFIC_SHIFT", "PRE_PRODUCTION_TRAFFIC_SHIFT", ""),
    ("PRODUCTION_TRAFFIC_SHIFT", None, "prod_shift"),
    ("PRODUCTION_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT", ""),
    ("POST_PRODUCTION_TRAFFIC_SHIFT", "POST_PRODUCTION_TRAFFIC_SHIFT", ""),
    ("BAKE_TIME", None, "bake"),
    ("CLEAN_UP", None, "clean_up"),
]


def _label(service: Any) -> str:
    return f"(service {service.name})"


def _groups(service: Any) -> dict[str, str]:
    found: dict[str, str] = service.__dict__.setdefault(_GROUPS_ATTR, {})
    return found


def production_group(service: Any) -> str | None:
    lbs = service.load_balancers or []
    default = lbs[0].get("targetGroupArn") if lbs else None
    return getattr(service, _PROD_GROUP_ATTR, None) or default


def load_balancers_for(service: Any, deployment_id: str) -> list[dict[str, Any]] | None:
    """The load balancer entries a task of this deployment registers in (None: the service's)."""
    group = _groups(service).get(deployment_id)
    if group is None or not service.load_balancers:
        return None
    return [{**service.load_balancers[0], "targetGroupArn": group}, *service.load_balancers[1:]]


def _advanced(service: Any) -> dict[str, Any]:
    lbs = service.load_balancers or []
    return dict(lbs[0].get("advancedConfiguration") or {}) if lbs else {}


def _shifts(record: Record) -> list[tuple[float, float]]:
    """Production weights of green, each with the bake (minutes) that follows it."""
    config = record.config
    if record.strategy == "CANARY":
        canary = config.get("canaryConfiguration") or {}
        percent = float(canary.get("canaryPercent", 10.0))
        return [(percent, float(canary.get("canaryBakeTimeInMinutes", 10))), (100.0, 0.0)]
    if record.strategy == "LINEAR":
        linear = config.get("linearConfiguration") or {}
        step = max(1.0, float(linear.get("stepPercent", 10.0)))
        bake = float(linear.get("stepBakeTimeInMinutes", 6))
        shifts, at = [], 0.0
        while at < 100.0:
            at = min(100.0, at + step)
            shifts.append((at, bake if at < 100.0 else 0.0))
        return shifts
    return [(100.0, 0.0)]


def _hook_id() -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=16))


class Engine:
    """The native strategies for one scheduler (its timing and its task helpers)."""

    def __init__(self, scheduler: Any) -> None:
        self.s = scheduler

    def minutes(self, value: Any) -> float:
        return float(value or 0) * float(self.s.timing.minute_s)

    # --- once per service per tick ---------------------------------------------------------

    def sync(self, backend: Any, service: Any, state: Any, now: float) -> None:
        sdeploys.sync(service, state.rollback_ids)
        for record in sdeploys.records(service):
            if record.status in sdeploys.TERMINAL:
                continue
            if not record.native:
                self._watch_rolling(backend, service, state, record, now)
            elif record.status == "ROLLBACK_IN_PROGRESS" and not self._live(state, record.deployment_id):
                service.deployments[:] = [d for d in service.deployments if d["id"] != record.deployment_id]
                record.lifecycle_stage = "CLEAN_UP"
                record.set("ROLLBACK_SUCCESSFUL", f"{record.status_reason} Rolled back to the previous "
                                                  "service revision.")

    def drive(self, backend: Any, service: Any, state: Any, now: float) -> bool:
        """Run the service's native deployment one step; False when there is none under way."""
        record = sdeploys.current(service)
        if record is None or not record.native or record.status not in _GOING:
            return False
        if record.target_group is None and not self._prepare(backend, service, state, record, now):
            return False
        reason = self._rollback_reason(backend, service, record, now)
        if reason:
            self.roll_back(backend, service, state, record, reason, now)
            return False
        self._keep_green(backend, service, state, record, now)
        while record.status in _GOING and self._advance(backend, service, state, record, now):
            pass
        self.s._count(service, state)
        return record.status in _GOING

    # --- steps ------------------------------------------------------------------------------

    def _prepare(self, backend: Any, service: Any, state: Any, record: Record, now: float) -> bool:
        advanced = _advanced(service)
        prod = production_group(service)
        alternate = advanced.get("alternateTargetGroupArn")
        if not prod or not alternate or not advanced.get("productionListenerRule"):
            self.roll_back(backend, service, state, record, f"{record.strategy} needs loadBalancers[0] with "
                           "advancedConfiguration (alternateTargetGroupArn, productionListenerRule).", now)
            return False
        base = service.load_balancers[0]["targetGroupArn"]
        record.source_group = prod
        record.target_group = alternate if prod == base else base
        for source in record.sources:
            _groups(service).setdefault(source.deployment_id, prod)
        _groups(service)[record.deployment_id] = record.target_group
        self._enter(service, record, now)
        return True

    def _live(self, state: Any, deployment_id: str) -> list[Any]:
        return [t for t in state.tasks if ecs_model.get_state(t).deployment_id == deployment_id
                and ecs_model.get_state(t).phase in _LIVE]

    def _keep_green(self, backend: Any, service: Any, state: Any, record: Record, now: float) -> None:
        deployment = self._deployment(service, record)
        if deployment is None:
            return
        deployment["desiredCount"] = service.desired_count
        missing = service.desired_count - len(self._live(state, record.deployment_id))
        if missing > 0 and record.lifecycle_stage not in ("RECONCILE_SERVICE", "PRE_SCALE_UP"):
            self.s._launch(backend, service, deployment, missing, now)

    def _deployment(self, service: Any, record: Record) -> dict[str, Any] | None:
        return next((d for d in service.deployments if d["id"] == record.deployment_id), None)

    def _enter(self, service: Any, record: Record, now: float) -> None:
        stage, hook_stage, _ = _SEQUENCE[record.step]
        record.lifecycle_stage = stage
        record.stage_until = None
        record.updated_at = ecs_model.now()
        if hook_stage is None:
            return
        for i, hook in enumerate(record.config.get("lifecycleHooks") or []):
            if hook_stage not in (hook.get("lifecycleStages") or []):
                continue
            kind = hook.get("targetType") or "AWS_LAMBDA"
            timeout = hook.get("timeoutConfiguration") or {}
            minutes = float(timeout.get("timeoutInMinutes") or 1440)
            hook_id = f"{hook_stage.lower()}-{i}-{_hook_id()}"
            record.hooks.append({
                "hookId": hook_id, "targetType": kind, "targetArn": hook.get("hookTargetArn"),
                "status": "AWAITING_ACTION" if kind == "PAUSE" else "SUCCEEDED",
                "expiresAt": ecs_model.now() + timedelta(seconds=self.minutes(minutes)),
                "timeoutAction": timeout.get("action") or "ROLLBACK",
            })
            record.hook_deadlines[hook_id] = now + self.minutes(minutes)
            if kind == "PAUSE":
                add_event(service, f"{_label(service)} service deployment paused at {hook_stage} by hook "
                                   f"{hook_id}: waiting for ContinueServiceDeployment.")
            else:
                add_event(service, f"{_label(service)} lifecycle hook {hook_id} ({kind} "
                                   f"{hook.get('hookTargetArn')}) at {hook_stage}: not run by the local "
                                   "ECS, taken as SUCCEEDED.")

    def _waiting_on_hooks(self, record: Record, now: float) -> bool:
        waiting = False
        for hook in record.hooks:
            if hook["status"] != "AWAITING_ACTION":
                continue
            if now >= record.hook_deadlines.get(hook["hookId"], float("inf")):
                hook["status"] = "TIMED_OUT"
                if hook["timeoutAction"] == "CONTINUE":
                    continue
            waiting = True
        return waiting

    def _advance(self, backend: Any, service: Any, state: Any, record: Record, now: float) -> bool:
        """Do what the current step needs; True when it moved to the next one."""
        if self._waiting_on_hooks(record, now):
            return False
        action = _SEQUENCE[record.step][2]
        label = _label(service)
        if action == "scale_up":
            running, _ = record.counts()
            if running < service.desired_count:
                return False
        elif action == "test_shift":
            rule = _advanced(service).get("testListenerRule")
            if traffic.set_weights(backend, rule, self._split(record, 100)):
                record.test_weight = 100.0
                add_event(service, f"{label} shifted test traffic to target group {record.target_group}.")
        elif action == "prod_shift":
            if record.stage_until is not None and now < record.stage_until:
                return False
            shifts = _shifts(record)
            if record.shift < len(shifts):
                weight, bake = shifts[record.shift]
                record.shift += 1
                green = round(weight)
                traffic.set_weights(backend, _advanced(service)["productionListenerRule"],
                                    self._split(record, green))
                record.prod_weight = float(green)
                record.updated_at = ecs_model.now()
                add_event(service, f"{label} shifted {green}% of production traffic to target group "
                                   f"{record.target_group} (service deployment {record.arn}).")
                record.stage_until = now + self.minutes(bake)
                return False
        elif action == "bake":
            if record.stage_until is None:
                record.stage_until = now + self.minutes(record.config.get("bakeTimeInMinutes"))
            if now < record.stage_until:
                return False
        elif action == "clean_up":
            self._succeed(backend, service, state, record, now)
            return False
        record.step += 1
        self._enter(service, record, now)
        return True

    @staticmethod
    def _split(record: Record, green: int) -> dict[str, int]:
        return {record.source_group or "": 100 - green, record.target_group or "": green}

    def _succeed(self, backend: Any, service: Any, state: Any, record: Record, now: float) -> None:
        deployment = self._deployment(service, record)
        old = [t for d in service.deployments if d["id"] != record.deployment_id
               for t in self._live(state, d["id"])]
        self.s._stop_by_scheduler(backend, service, old, record.deployment_id, now)
        setattr(service, _PROD_GROUP_ATTR, record.target_group)
        if deployment is not None:
            deployment["rolloutState"] = "COMPLETED"
            deployment["rolloutStateReason"] = f"ECS deployment {deployment['id']} completed."
            deployment["updatedAt"] = ecs_model.now()
            state.last_completed = (deployment["id"], deployment["taskDefinition"])
        record.set("SUCCESSFUL", "Service deployment completed successfully.")
        add_event(service, f"{_label(service)} (service deployment {record.arn}) {record.strategy} "
                           "deployment completed.")
        log.info("native.successful", service=service.name, arn=record.arn)

    # --- rollback ---------------------------------------------------------------------------

    def _rollback_reason(self, backend: Any, service: Any, record: Record, now: float) -> str | None:
        if record.stop_requested:
            return record.stop_requested
        alarms = record.config.get("alarms") or {}
        if alarms.get("enable"):
            fired = traffic.alarms_in_alarm(backend, list(alarms.get("alarmNames") or []))
            if fired:
                record.triggered_alarms = sorted(set(record.triggered_alarms) | set(fired))
                if alarms.get("rollback"):
                    return f"CloudWatch alarm(s) {', '.join(fired)} in ALARM."
        for hook in record.hooks:
            timed_out = hook["status"] == "TIMED_OUT" and hook["timeoutAction"] != "CONTINUE"
            if hook["status"] == "FAILED" or timed_out:
                return f"Lifecycle hook {hook['hookId']} {hook['status'].lower().replace('_', ' ')}."
        breaker = record.config.get("deploymentCircuitBreaker") or {}
        deployment = self._deployment(service, record) or {}
        if breaker.get("enable") and int(deployment.get("failedTasks", 0)) >= \
                sdeploys.breaker_threshold(service.desired_count):
            record.breaker_triggered = True
            return "ECS deployment circuit breaker: tasks failed to start."
        return None

    def roll_back(
        self, backend: Any, service: Any, state: Any, record: Record, reason: str, now: float
    ) -> None:
        """Traffic back to blue, blue PRIMARY again; the normal reconcile then stops the green tasks."""
        advanced = _advanced(service)
        if record.source_group and record.target_group:
            back = {record.source_group: 100, record.target_group: 0}
            traffic.set_weights(backend, advanced.get("productionListenerRule"), back)
            traffic.set_weights(backend, advanced.get("testListenerRule"), back)
        record.prod_weight = record.test_weight = 0.0
        source = next((d for d in service.deployments if d["id"] != record.deployment_id), None)
        green = self._deployment(service, record)
        if green is not None:
            green.update(status="ACTIVE", rolloutState="FAILED", rolloutStateReason=reason,
                         updatedAt=ecs_model.now())
        if source is not None:
            service.deployments.remove(source)
            service.deployments.insert(0, source)
            source["status"] = "PRIMARY"
            service.task_definition = source["taskDefinition"]
        record.rollback = {"reason": reason, "startedAt": ecs_model.now(),
                           "serviceRevisionArn": record.sources[0].arn if record.sources else None}
        record.set("ROLLBACK_IN_PROGRESS", reason)
        add_event(service, f"{_label(service)} (service deployment {record.arn}) rolling back: {reason}")
        log.info("native.rollback", service=service.name, arn=record.arn, reason=reason)

    def _watch_rolling(self, backend: Any, service: Any, state: Any, record: Record, now: float) -> None:
        """Rolling deployments: a stop request or an alarm rolls back to the last completed one."""
        if record.status not in _GOING:
            return
        reason = record.stop_requested
        alarms = record.config.get("alarms") or {}
        if reason is None and alarms.get("enable"):
            fired = traffic.alarms_in_alarm(backend, list(alarms.get("alarmNames") or []))
            record.triggered_alarms = sorted(set(record.triggered_alarms) | set(fired))
            if fired and alarms.get("rollback"):
                reason = f"CloudWatch alarm(s) {', '.join(fired)} in ALARM."
        primary = service.deployments[0] if service.deployments else None
        if reason is None or primary is None or primary["id"] != record.deployment_id:
            return
        primary.update(rolloutState="FAILED", rolloutStateReason=reason, updatedAt=ecs_model.now())
        if state.last_completed is None:
            record.set("STOPPED", reason)
            return
        target_id, target_td = state.last_completed
        primary["status"] = "ACTIVE"
        why = f"{reason} Rolling back to deploymentId {target_id}."
        rollback = self.s._new_deployment(service, target_td, why)
        state.rollback_ids.add(rollback["id"])
        service.deployments.insert(0, rollback)
        service.task_definition = target_td
        add_event(service, f"{_label(service)} rolling back to deployment {target_id}.")
        sdeploys.sync(service, state.rollback_ids)
