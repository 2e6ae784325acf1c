"""Service deployments and service revisions, as ECS's service-deployments API shows them.

Every deployment the scheduler makes (CreateService, an UpdateService that starts a new deployment)
is one *service deployment* from the revisions that ran before (source) to a new *service revision*
(target). Rolling deployments get their status from the deployment in the service's `deployments`
array (`sync`); deployments under a native strategy (BLUE_GREEN, LINEAR, CANARY) are driven by
`devstack.aws.native`, which sets the status itself. Records live on moto's service object, so
moto's reset drops them with the service.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from devstack.aws import ecs_model

_RECORDS_ATTR = "_devstack_service_deployments"
_REVISIONS_ATTR = "_devstack_service_revisions"
NATIVE = ("BLUE_GREEN", "LINEAR", "CANARY")
TERMINAL = ("SUCCESSFUL", "STOPPED", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED")


@dataclass
class Revision:
    arn: str
    service: Any
    deployment_id: str
    task_definition: str
    created_at: datetime
    load_balancers: list[dict[str, Any]]
    network_configuration: Any
    launch_type: str | None
    platform_version: str | None

    def api(self) -> dict[str, Any]:
        return {
            "serviceRevisionArn": self.arn, "serviceArn": self.service.arn,
            "clusterArn": self.service.cluster_arn, "taskDefinition": self.task_definition,
            "launchType": self.launch_type, "platformVersion": self.platform_version,
            "loadBalancers": self.load_balancers, "networkConfiguration": self.network_configuration,
            "createdAt": self.created_at,
        }


@dataclass
class Record:
    """One service deployment. The `native` fields are used by devstack.aws.native only."""

    arn: str
    service: Any
    deployment_id: str
    target: Revision
    sources: list[Revision]
    config: dict[str, Any]
    created_at: datetime
    strategy: str = "ROLLING"
    status: str = "IN_PROGRESS"
    status_reason: str = "Service deployment in progress."
    lifecycle_stage: str | None = "RECONCILE_SERVICE"
    finished_at: datetime | None = None
    stopped_at: datetime | None = None
    updated_at: datetime | None = None
    rollback: dict[str, Any] | None = None
    rollback_deployment_id: str | None = None  # rolling: the deployment ECS rolls back with
    hooks: list[dict[str, Any]] = field(default_factory=list)  # lifecycleHookDetails
    triggered_alarms: list[str] = field(default_factory=list)
    breaker_triggered: bool = False
    test_weight: float = 0.0
    prod_weight: float = 0.0
    stop_requested: str | None = None  # why a StopServiceDeployment asked for a rollback
    # native engine bookkeeping (monotonic seconds, stage progress)
    stage_until: float | None = None
    step: int = 0
    shift: int = 0
    hook_deadlines: dict[str, float] = field(default_factory=dict)
    target_group: str | None = None
    source_group: str | None = None

    @property
    def native(self) -> bool:
        return self.strategy in NATIVE

    def set(self, status: str, reason: str) -> None:
        self.status, self.status_reason = status, reason
        self.updated_at = ecs_model.now()
        if status in TERMINAL and self.finished_at is None:
            self.finished_at = self.updated_at
            if status == "STOPPED":
                self.stopped_at = self.updated_at

    def counts(self) -> tuple[int, int]:
        for deployment in self.service.deployments:
            if deployment["id"] == self.deployment_id:
                return int(deployment.get("runningCount", 0)), int(deployment.get("pendingCount", 0))
        return 0, 0

    def _monitor(self, triggered: bool, enabled: bool) -> str:
        if not enabled:
            return "DISABLED"
        if triggered:
            return "TRIGGERED"
        return "MONITORING_COMPLETE" if self.status in TERMINAL else "MONITORING"

    def brief(self) -> dict[str, Any]:
        return {
            "serviceDeploymentArn": self.arn, "serviceArn": self.service.arn,
            "clusterArn": self.service.cluster_arn, "createdAt": self.created_at,
            "startedAt": self.created_at, "finishedAt": self.finished_at,
            "targetServiceRevisionArn": self.target.arn, "status": self.status,
            "statusReason": self.status_reason,
        }

    def api(self) -> dict[str, Any]:
        running, pending = self.counts()
        alarms = self.config.get("alarms") or {}
        breaker = self.config.get("deploymentCircuitBreaker") or {}
        desired = self.service.desired_count
        answer = {
            **self.brief(),
            "stoppedAt": self.stopped_at, "updatedAt": self.updated_at or self.created_at,
            "sourceServiceRevisions": [
                {"arn": s.arn, "requestedTaskCount": 0, "runningTaskCount": _running_of(s),
                 "pendingTaskCount": 0} for s in self.sources],
            "targetServiceRevision": {
                "arn": self.target.arn, "requestedTaskCount": desired, "runningTaskCount": running,
                "pendingTaskCount": pending,
                "requestedTestTrafficWeight": self.test_weight if self.native else None,
                "requestedProductionTrafficWeight": self.prod_weight if self.native else None,
            },
            "lifecycleStage": self.lifecycle_stage,
            "lifecycleHookDetails": self.hooks,
            "deploymentConfiguration": self.config,
            "rollback": self.rollback,
            "deploymentCircuitBreaker": {
                "status": self._monitor(self.breaker_triggered, bool(breaker.get("enable"))),
                "failureCount": _failed_of(self), "threshold": breaker_threshold(desired),
            },
            "alarms": {
                "status": self._monitor(bool(self.triggered_alarms), bool(alarms.get("enable"))),
                "alarmNames": list(alarms.get("alarmNames") or []),
                "triggeredAlarmNames": list(self.triggered_alarms),
            },
        }
        return {k: v for k, v in answer.items() if v is not None}


def breaker_threshold(desired: int) -> int:
    """ECS fails a deployment after 0.5 x desired failed tasks, bounded to [3, 200]."""
    return max(3, min(200, -(-desired // 2)))


def _running_of(revision: Revision) -> int:
    for deployment in revision.service.deployments:
        if deployment["id"] == revision.deployment_id:
            return int(deployment.get("runningCount", 0))
    return 0


def _failed_of(record: Record) -> int:
    for deployment in record.service.deployments:
        if deployment["id"] == record.deployment_id:
            return int(deployment.get("failedTasks", 0))
    return 0


def _suffix(n: int = 21) -> str:
    return "".join(random.choices(string.ascii_letters + string.digits, k=n))


def _arn(service: Any, kind: str, suffix: str) -> str:
    head = str(service.cluster_arn).split(":cluster/", 1)[0]
    return f"{head}:{kind}/{service.cluster_name}/{service.name}/{suffix}"


def records(service: Any) -> list[Record]:
    """The service's deployments, oldest first."""
    found: list[Record] = service.__dict__.setdefault(_RECORDS_ATTR, [])
    return found


def revisions(service: Any) -> dict[str, Revision]:
    found: dict[str, Revision] = service.__dict__.setdefault(_REVISIONS_ATTR, {})
    return found


def record_of(service: Any, deployment_id: str) -> Record | None:
    return next((r for r in records(service) if r.deployment_id == deployment_id), None)


def current(service: Any) -> Record | None:
    """The newest service deployment that has not ended."""
    return next((r for r in reversed(records(service)) if r.status not in TERMINAL), None)


def revision_for(service: Any, deployment: dict[str, Any]) -> Revision:
    known = revisions(service)
    number = deployment["id"].split("/")[-1]
    arn = _arn(service, "service-revision", number)
    if arn not in known:
        known[arn] = Revision(
            arn, service, deployment["id"], deployment["taskDefinition"], deployment["createdAt"],
            [dict(lb) for lb in service.load_balancers or []], deployment.get("networkConfiguration"),
            service.launch_type, service.platform_version)
    return known[arn]


def sync(service: Any, rollback_ids: set[str]) -> None:
    """Make a record for each new deployment, and move rolling records along with their
    deployment's rolloutState. Deployments ECS makes to roll back get no record of their own: the
    rolled-back service deployment follows them."""
    deployments = list(service.deployments or [])
    by_id = {d["id"]: d for d in deployments}
    for deployment in reversed(deployments):
        if deployment["id"] in rollback_ids or record_of(service, deployment["id"]) is not None:
            continue
        config = dict(service.deployment_configuration or {})
        sources = [revision_for(service, d) for d in deployments if d is not deployment
                   and d.get("runningCount", 0) + d.get("pendingCount", 0) > 0]
        for older in records(service):  # a newer deployment stops the one under way
            if older.status not in TERMINAL and not older.native:
                older.set("STOPPED", "Service deployment stopped: a newer service deployment started.")
        strategy = str(config.get("strategy") or "ROLLING")
        if not sources:
            strategy = "ROLLING"  # nothing to shift traffic from: the first deployment rolls out
        records(service).append(Record(
            _arn(service, "service-deployment", _suffix()), service, deployment["id"],
            revision_for(service, deployment), sources, config, deployment["createdAt"], strategy))
    for record in records(service):
        if record.native or record.status in TERMINAL:
            continue
        _sync_rolling(record, by_id)


def _sync_rolling(record: Record, by_id: dict[str, dict[str, Any]]) -> None:
    mine = by_id.get(record.deployment_id)
    if record.rollback_deployment_id is not None:
        rollback = by_id.get(record.rollback_deployment_id)
        state = (rollback or {}).get("rolloutState")
        if state == "COMPLETED" or rollback is None:
            record.set("ROLLBACK_SUCCESSFUL", f"{record.status_reason} Rolled back.")
        elif state == "FAILED":
            record.set("ROLLBACK_FAILED", f"{record.status_reason} The rollback failed too.")
        return
    if mine is None:
        record.set("STOPPED", "Service deployment stopped: a newer service deployment started.")
        return
    state = mine.get("rolloutState")
    if state == "COMPLETED":
        record.lifecycle_stage = "CLEAN_UP"
        record.set("SUCCESSFUL", "Service deployment completed successfully.")
    elif state == "FAILED":
        record.breaker_triggered = "circuit breaker" in str(mine.get("rolloutStateReason"))
        head = next(iter(by_id.values()), None)
        reason = str(mine.get("rolloutStateReason") or "Service deployment failed.")
        if head is not None and head["id"] != record.deployment_id:
            record.rollback_deployment_id = head["id"]
            record.rollback = {"reason": reason, "startedAt": ecs_model.now(),
                               "serviceRevisionArn": revision_for(record.service, head).arn}
            record.set("ROLLBACK_IN_PROGRESS", reason)
        else:
            record.set("STOPPED", reason)
    elif mine.get("status") != "PRIMARY":
        record.set("STOPPED", "Service deployment stopped: a newer service deployment started.")
    elif mine.get("runningCount", 0) or mine.get("pendingCount", 0):
        record.lifecycle_stage = "SCALE_UP"


def find(arn: str) -> tuple[Any, Any, Record | Revision] | None:
    """(backend, service, record or revision) for a service-deployment or service-revision ARN."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or "/" not in parts[5]:
        return None
    kind, _, rest = parts[5].partition("/")
    pieces = rest.split("/")
    if kind not in ("service-deployment", "service-revision") or len(pieces) != 3:
        return None
    cluster, name, _ = pieces
    for backend in ecs_model.backends():
        if backend.account_id != parts[4] or backend.region_name != parts[3]:
            continue
        service = backend.services.get(f"{cluster}:{name}")
        if service is None:
            continue
        if kind == "service-revision":
            revision = revisions(service).get(arn)
            return (backend, service, revision) if revision is not None else None
        record = next((r for r in records(service) if r.arn == arn), None)
        return (backend, service, record) if record is not None else None
    return None
