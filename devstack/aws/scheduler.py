"""The ECS service scheduler the local AWS runs beside moto: rollouts, failures, rollbacks.

Everything here works through moto's own objects (via `ecs_model`), so any client of the server
(boto3, the AWS CLI, ecs-deploy) sees the same services, deployments, tasks and events.

One tick, under `ecs_model.LOCK`:
1. each task moves along its lifecycle when its time comes
   (PROVISIONING -> PENDING -> RUNNING -> [DEACTIVATING ->] STOPPED); a service task that stops by
   itself counts as a failed task of its deployment;
2. each service is reconciled like ECS's rolling update: the circuit breaker is checked, old
   deployments' tasks are stopped and the PRIMARY's started as far as `minimumHealthyPercent` and
   `maximumPercent` allow, drained deployments disappear, and a PRIMARY that runs `desiredCount`
   tasks alone is COMPLETED ("has reached a steady state").
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from devstack.aws import ecs_model, health, markers, native, sdeploy_api
from devstack.aws.containers import ContainerRunner
from devstack.aws.ecs_model import add_event, task_id
from devstack.aws.timing import Timing

log = structlog.get_logger("devstack.aws.scheduler")

_STARTING = ("PROVISIONING", "PENDING")
_LIVE = ("PROVISIONING", "PENDING", "RUNNING")


@dataclass
class TaskLife:
    kind: Literal["service", "run"]
    behaviour: markers.Behaviour
    pending_at: float
    running_at: float
    phase: str = "PROVISIONING"
    exit_at: float | None = None
    stop_at: float | None = None
    stopped_mono: float | None = None
    service: Any = None
    deployment_id: str = ""
    targets: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class ServiceLife:
    tasks: list[Any] = field(default_factory=list)  # not yet STOPPED
    last_completed: tuple[str, str] | None = None  # (deployment id, task definition ARN)
    steady: bool = False
    steady_since: float | None = None
    rollback_ids: set[str] = field(default_factory=set)
    unstable_reported: set[str] = field(default_factory=set)


def breaker_threshold(desired: int) -> int:
    """ECS fails a deployment after 0.5 x desired failed tasks, bounded to [3, 200]."""
    return max(3, min(200, math.ceil(0.5 * desired)))


def _label(service: Any) -> str:
    return f"(service {service.name})"


def _tasks_text(tasks: Iterable[Any]) -> str:
    return " ".join(f"(task {task_id(t)})" for t in tasks)


class Scheduler:
    """Implements `ecs_model.Hooks` and runs the tick loop in a named daemon thread."""

    def __init__(self, timing: Timing, containers: ContainerRunner | None = None) -> None:
        self.timing = timing
        #: opt-in: run the tasks' containers for real (devstack/aws/containers.py)
        self.containers = containers
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.native = native.Engine(self)  # service deployments and the native strategies

    # --- thread ---------------------------------------------------------------------------

    def start(self) -> None:
        ecs_model.install(self)
        sdeploy_api.install(self.sync_service_deployments)
        health.install()
        self._thread = threading.Thread(target=self._loop, name="devstack-aws-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.timing.tick_s):
                self.tick()
        except BaseException as exc:
            self.error = exc
            log.exception("scheduler.died")
            raise

    def tick(self) -> None:
        now = time.monotonic()
        with ecs_model.LOCK:
            for backend in ecs_model.backends():
                for task in ecs_model.all_tasks(backend):
                    self._advance_task(backend, task, now)
                for service in list(backend.services.values()):
                    try:
                        self._reconcile(backend, service, now)
                    except Exception as exc:  # one broken service must not stop the others
                        log.exception("scheduler.service_failed", service=service.name)
                        add_event(service, f"{_label(service)} devstack scheduler error: {exc}")

    # --- hooks, called inside the request ------------------------------------------------

    def sync_service_deployments(self, backend: Any, service: Any) -> None:
        if ecs_model.get_state(service) is not None:
            self.native.sync(backend, service, ecs_model.get_state(service), time.monotonic())

    def service_created(self, backend: Any, service: Any) -> None:
        ecs_model.set_state(service, ServiceLife())
        service.events = []
        service.running_count = service.pending_count = 0
        if service.deployment_controller.get("type", "ECS") == "ECS":
            service.deployments = [self._new_deployment(service, service.task_definition)]
        self._reconcile(backend, service, time.monotonic())

    def service_updated(self, backend: Any, service: Any, new_deployment: bool) -> None:
        if ecs_model.get_state(service) is None:
            ecs_model.set_state(service, ServiceLife())
        if new_deployment or not service.deployments:
            for deployment in service.deployments:
                deployment["status"] = "ACTIVE"
            service.deployments.insert(0, self._new_deployment(service, service.task_definition))
        self._reconcile(backend, service, time.monotonic())

    def tasks_run(self, backend: Any, tasks: list[Any]) -> None:
        now = time.monotonic()
        for task in tasks:
            ecs_model.set_status(task, "PROVISIONING", "RUNNING")
            ecs_model.set_state(task, self._task_life("run", backend, task, now))

    # --- tasks ----------------------------------------------------------------------------

    def _task_life(self, kind: Literal["service", "run"], backend: Any, task: Any, now: float) -> TaskLife:
        env = markers.collect_environment(ecs_model.container_definitions(backend, task), task.overrides)
        start_s = self.timing.task_start_s
        return TaskLife(kind, markers.parse(env), now + start_s / 2, now + start_s)

    def _advance_task(self, backend: Any, task: Any, now: float) -> None:
        life: TaskLife | None = ecs_model.get_state(task)
        if life is None:
            return  # not ours (e.g. made before the scheduler was installed)
        if life.phase == "STOPPED":
            if life.stopped_mono is not None and now - life.stopped_mono > self.timing.stopped_task_ttl_s:
                ecs_model.forget_task(backend, task)
            return
        if task.last_status == "STOPPED":  # StopTask from a client
            if not getattr(task, "stop_code", None):
                task.stop_code = "UserInitiated"
            ecs_model.finish_deregister(backend, life.targets)
            self._finish_stop(backend, task, life, now, failed=False)
            return
        if (
            life.kind == "service"
            and life.phase in _LIVE
            and not ecs_model.current_service(backend, life.service)
        ):
            self._begin_stop(backend, [task], now, "Service was deleted or replaced")
            return
        if life.phase == "PROVISIONING" and now >= life.pending_at:
            life.phase = "PENDING"
            ecs_model.set_status(task, "PENDING")
        up = life.phase == "PENDING" and now >= life.running_at
        if up and self._containers_up(backend, task, life, now):
            self._start(backend, task, life, now)
        if life.phase == "RUNNING" and life.kind == "service" and self._unhealthy(backend, task, life, now):
            return
        if life.phase == "RUNNING" and life.exit_at is not None and now >= life.exit_at:
            self._exit(backend, task, life, now)
        if life.phase == "RUNNING" and self.containers is not None:
            self._containers_exited(backend, task, life, now)
        if life.phase == "DEACTIVATING" and life.stop_at is not None and now >= life.stop_at:
            ecs_model.finish_deregister(backend, life.targets)
            self._finish_stop(backend, task, life, now, failed=False)

    def _start(self, backend: Any, task: Any, life: TaskLife, now: float) -> None:
        behaviour = life.behaviour
        if behaviour.invalid or behaviour.fail_start:
            why = behaviour.invalid or f"{markers.FAIL}=start"
            ecs_model.set_exit(
                task, None, "TaskFailedToStart", f"CannotStartContainerError: devstack marker {why}"
            )
            self._finish_stop(backend, task, life, now, failed=life.kind == "service")
            return
        life.phase = "RUNNING"
        ecs_model.set_status(task, "RUNNING")
        if life.kind == "run" and self.containers is None:  # real containers end by themselves
            life.exit_at = now + (behaviour.run_s if behaviour.run_s is not None else self.timing.run_task_s)
        elif behaviour.exits:
            life.exit_at = now + (
                behaviour.run_s if behaviour.run_s is not None else self.timing.fail_after_s
            )
        if life.kind == "service":
            service = life.service
            life.targets = ecs_model.register_targets(
                backend, service, task, native.load_balancers_for(service, life.deployment_id))
            for arn, _target in life.targets:
                add_event(service, f"{_label(service)} registered 1 targets in (target-group {arn})")
            health.started(backend, task, life)

    def _unhealthy(self, backend: Any, task: Any, life: TaskLife, now: float) -> bool:
        """Stop a task that fails its health checks (devstack/aws/health.py)."""
        why = health.failing(backend, task, life, life.service, now)
        if why is None:
            return False
        health.stopped_unhealthy(life.service, task, life, why)
        self._begin_stop(backend, [task], now, why)
        return True

    # --- real containers (opt-in): the hook into devstack/aws/containers.py ---------------

    def _containers_up(self, backend: Any, task: Any, life: TaskLife, now: float) -> bool:
        """True once the task may be RUNNING: at once without a runner, else when its containers
        run; a pull or start failure stops the task here."""
        if self.containers is None:
            return True
        state = self.containers.state(task.task_arn)
        if state is None:
            self.containers.launch(task.task_arn, ecs_model.container_definitions(backend, task),
                                   task.overrides)
            return False
        if state.phase == "failed":
            ecs_model.set_exit(task, None, state.stop_code, state.reason)
            self._finish_stop(backend, task, life, now, failed=life.kind == "service")
        return state.phase in ("running", "exited")

    def _containers_exited(self, backend: Any, task: Any, life: TaskLife, now: float) -> None:
        assert self.containers is not None
        state = self.containers.state(task.task_arn)
        if state is None:
            return
        task.health_status = state.health  # the real health check's verdict (containers.py)
        for container in task.containers:
            container.health_status = state.health
        if state.phase == "exited":
            self._exit(backend, task, life, now, state.exit_code)
        elif state.health == "UNHEALTHY" and life.kind == "service":
            why = "Task failed container health checks"
            health.stopped_unhealthy(life.service, task, life, why)
            self._begin_stop(backend, [task], now, why)

    def _exit(self, backend: Any, task: Any, life: TaskLife, now: float, code: int | None = None) -> None:
        code = life.behaviour.exit_code if code is None else code
        if code is None:
            code = 0 if life.kind == "run" else 1
        ecs_model.set_exit(task, code, "EssentialContainerExited", "Essential container in task exited")
        ecs_model.finish_deregister(backend, life.targets)
        self._finish_stop(backend, task, life, now, failed=life.kind == "service")

    def _finish_stop(self, backend: Any, task: Any, life: TaskLife, now: float, *, failed: bool) -> None:
        life.phase = "STOPPED"
        life.stopped_mono = now
        ecs_model.set_status(task, "STOPPED", "STOPPED")
        if self.containers is not None:
            self.containers.stop(task.task_arn)
        ecs_model.release_network(backend, task)
        if life.kind != "service":
            return
        state: ServiceLife | None = ecs_model.get_state(life.service)
        if state is not None and task in state.tasks:
            state.tasks.remove(task)
        if failed:
            for deployment in life.service.deployments:
                if deployment["id"] == life.deployment_id:
                    deployment["failedTasks"] = deployment.get("failedTasks", 0) + 1

    def _begin_stop(self, backend: Any, tasks: list[Any], now: float, reason: str) -> None:
        """The scheduler stops tasks: deregister (draining), DEACTIVATING, then STOPPED."""
        for task in tasks:
            life: TaskLife = ecs_model.get_state(task)
            ecs_model.set_exit(task, None, "ServiceSchedulerInitiated", reason)
            for container in task.containers:
                container.reason = None
            if life.phase in _STARTING:
                self._finish_stop(backend, task, life, now, failed=False)
                continue
            life.phase = "DEACTIVATING"
            life.stop_at = now + self.timing.task_stop_s
            if self.containers is not None:
                self.containers.stop(task.task_arn)
            ecs_model.set_status(task, "DEACTIVATING", "STOPPED")
            ecs_model.begin_deregister(backend, life.targets)

    # --- services -------------------------------------------------------------------------

    def _new_deployment(
        self, service: Any, task_definition: str, reason: str | None = None
    ) -> dict[str, Any]:
        deployment_id = f"ecs-svc/{random.randint(10**18, 10**19 - 1)}"
        at = ecs_model.now()
        return {
            "id": deployment_id,
            "status": "PRIMARY",
            "taskDefinition": task_definition,
            "desiredCount": service.desired_count,
            "pendingCount": 0,
            "runningCount": 0,
            "failedTasks": 0,
            "createdAt": at,
            "updatedAt": at,
            "launchType": service.launch_type,
            "platformVersion": service.platform_version,
            "platformFamily": "Linux" if service.launch_type == "FARGATE" else None,
            "networkConfiguration": service.network_configuration or None,
            "rolloutState": "IN_PROGRESS",
            "rolloutStateReason": reason or f"ECS deployment {deployment_id} in progress.",
        }

    def _launch(self, backend: Any, service: Any, deployment: dict[str, Any], count: int, now: float) -> None:
        started = []
        for _ in range(count):
            try:
                task = ecs_model.create_task(
                    backend,
                    service.cluster_name,
                    deployment["taskDefinition"],
                    group=f"service:{service.name}",
                    started_by=deployment["id"],
                    launch_type=service.launch_type or "",
                    network_configuration=deployment.get("networkConfiguration"),
                    tags=service.tags if service.propagate_tags == "SERVICE" else None,
                    platform_version=service.platform_version,
                )
            except Exception as exc:  # noqa: BLE001  (moto refused: a subnet gone, a task definition deleted, ...)
                add_event(service, f"{_label(service)} was unable to place a task. Reason: {exc}.")
                break
            ecs_model.set_status(task, "PROVISIONING", "RUNNING")
            life = self._task_life("service", backend, task, now)
            life.service, life.deployment_id = service, deployment["id"]
            ecs_model.set_state(task, life)
            ecs_model.get_state(service).tasks.append(task)
            started.append(task)
        if started:
            add_event(service, f"{_label(service)} has started {len(started)} tasks: {_tasks_text(started)}.")

    def _stop_by_scheduler(
        self, backend: Any, service: Any, tasks: list[Any], primary_id: str, now: float
    ) -> None:
        if not tasks:
            return
        draining = [t for t in tasks if ecs_model.get_state(t).targets]
        groups: dict[str, int] = {}
        for task in draining:
            for arn, _ in ecs_model.get_state(task).targets:
                groups[arn] = groups.get(arn, 0) + 1
        self._begin_stop(backend, tasks, now, f"Scaling activity initiated by (deployment {primary_id})")
        if draining:
            add_event(service, f"{_label(service)} has begun draining connections on {len(draining)} tasks.")
            for arn, n in groups.items():
                add_event(service, f"{_label(service)} deregistered {n} targets in (target-group {arn})")
        add_event(service, f"{_label(service)} has stopped {len(tasks)} running tasks: {_tasks_text(tasks)}.")

    def _check_breaker(self, service: Any, state: ServiceLife) -> None:
        primary = service.deployments[0]
        desired = service.desired_count
        failed = primary.get("failedTasks", 0)
        if primary["rolloutState"] != "IN_PROGRESS" or failed < breaker_threshold(desired):
            return
        breaker = service.deployment_configuration["deploymentCircuitBreaker"]
        label = _label(service)
        if not breaker.get("enable"):
            if primary["id"] not in state.unstable_reported:
                state.unstable_reported.add(primary["id"])
                add_event(
                    service,
                    f"{label} is unable to consistently start tasks successfully. For more "
                    "information, see the Troubleshooting section of the Amazon ECS Developer Guide.",
                )
            return
        primary["rolloutState"] = "FAILED"
        primary["rolloutStateReason"] = "ECS deployment circuit breaker: tasks failed to start."
        primary["updatedAt"] = ecs_model.now()
        add_event(service, f"{label} (deployment {primary['id']}) deployment failed: tasks failed to start.")
        log.info("scheduler.deployment_failed", service=service.name, deployment=primary["id"], failed=failed)
        if not breaker.get("rollback") or state.last_completed is None or primary["id"] in state.rollback_ids:
            return
        target_id, target_td = state.last_completed
        primary["status"] = "ACTIVE"
        rollback = self._new_deployment(
            service, target_td, f"ECS deployment circuit breaker: rolling back to deploymentId {target_id}."
        )
        state.rollback_ids.add(rollback["id"])
        service.deployments.insert(0, rollback)
        service.task_definition = target_td
        add_event(service, f"{label} rolling back to deployment {target_id}.")
        log.info("scheduler.rollback", service=service.name, to=target_id, deployment=rollback["id"])

    def _reconcile(self, backend: Any, service: Any, now: float) -> None:
        state: ServiceLife | None = ecs_model.get_state(service)
        if state is None:
            return
        live = [t for t in state.tasks if ecs_model.get_state(t).phase in _LIVE]
        if not ecs_model.current_service(backend, service):
            if live:
                self._begin_stop(backend, live, now, "Service was deleted")
            self._count(service, state)
            return
        if not service.deployments:
            return
        self.native.sync(backend, service, state, now)
        if self.native.drive(backend, service, state, now):
            return
        self._check_breaker(service, state)
        primary = service.deployments[0]
        primary["desiredCount"] = desired = service.desired_count
        config = service.deployment_configuration
        min_healthy = math.ceil(desired * config["minimumHealthyPercent"] / 100)
        max_total = math.floor(desired * config["maximumPercent"] / 100)

        def of(task: Any) -> TaskLife:
            return ecs_model.get_state(task)  # type: ignore[no-any-return]

        live = [t for t in state.tasks if of(t).phase in _LIVE]
        order = {d["id"]: i for i, d in enumerate(service.deployments)}
        # Oldest deployment first; within one, tasks not yet running before running ones.
        old = sorted(
            (t for t in live if of(t).deployment_id != primary["id"]),
            key=lambda t: (-order.get(of(t).deployment_id, 10**6), of(t).phase == "RUNNING"),
        )
        mine = sorted(
            (t for t in live if of(t).deployment_id == primary["id"]), key=lambda t: of(t).phase == "RUNNING"
        )
        to_stop = [t for t in old if of(t).phase in _STARTING]
        if len(mine) > desired:  # scale-in
            to_stop += mine[: len(mine) - desired]
            mine = mine[len(mine) - desired :]
        if primary["rolloutState"] != "FAILED":
            healthy = sum(1 for t in live if of(t).phase == "RUNNING" and t not in to_stop)
            old_running = [t for t in old if of(t).phase == "RUNNING"]
            to_stop += old_running[: max(0, healthy - min_healthy)]
        self._stop_by_scheduler(backend, service, to_stop, primary["id"], now)
        if primary["rolloutState"] != "FAILED":
            total = sum(1 for t in live if t not in to_stop)
            self._launch(backend, service, primary, max(0, min(desired - len(mine), max_total - total)), now)
        self._count(service, state)

        # Deployments whose tasks are all gone disappear; the PRIMARY stays, and a FAILED one stays
        # visible until the deployment that replaced it is done (so pollers can see it failed).
        def has_tasks(d: dict[str, Any]) -> bool:
            return any(of(t).deployment_id == d["id"] for t in state.tasks)

        service.deployments[1:] = [
            d for d in service.deployments[1:] if has_tasks(d) or d["rolloutState"] == "FAILED"
        ]
        draining = any(of(t).phase == "DEACTIVATING" for t in state.tasks)
        steady = (
            all(not has_tasks(d) for d in service.deployments[1:])
            and primary["runningCount"] == desired
            and primary["pendingCount"] == 0
            and not draining
        )
        # ECS calls a service steady once it has stayed so for a while, not at the first instant.
        if not steady:
            state.steady_since = None
        elif state.steady_since is None:
            state.steady_since = now
        steady = steady and now - (state.steady_since or now) >= self.timing.steady_after_s
        if steady and primary["rolloutState"] == "IN_PROGRESS":
            primary["rolloutState"] = "COMPLETED"
            primary["rolloutStateReason"] = f"ECS deployment {primary['id']} completed."
            primary["updatedAt"] = ecs_model.now()
            state.last_completed = (primary["id"], primary["taskDefinition"])
            add_event(service, f"{_label(service)} (deployment {primary['id']}) deployment completed.")
            log.info("scheduler.deployment_completed", service=service.name, deployment=primary["id"])
        if steady:
            del service.deployments[1:]
        if steady and not state.steady:
            add_event(service, f"{_label(service)} has reached a steady state.")
        state.steady = steady
        self.native.sync(backend, service, state, now)

    def _count(self, service: Any, state: ServiceLife) -> None:
        running: dict[str, int] = {}
        pending: dict[str, int] = {}
        for task in state.tasks:
            life: TaskLife = ecs_model.get_state(task)
            if life.phase == "RUNNING":
                running[life.deployment_id] = running.get(life.deployment_id, 0) + 1
            elif life.phase in _STARTING:
                pending[life.deployment_id] = pending.get(life.deployment_id, 0) + 1
        for i, deployment in enumerate(service.deployments):
            counts = (running.get(deployment["id"], 0), pending.get(deployment["id"], 0))
            if (deployment["runningCount"], deployment["pendingCount"]) != counts:
                deployment["runningCount"], deployment["pendingCount"] = counts
                deployment["updatedAt"] = ecs_model.now()
            if i > 0:
                deployment["desiredCount"] = sum(counts)
        service.running_count = sum(running.values())
        service.pending_count = sum(pending.values())
