"""Health checks in the local ECS, driven by markers (devstack/aws/markers.py):

    DEVSTACK_UNHEALTHY_AFTER=S   a container with a `healthCheck` reports HEALTHY once the task runs,
                                 then UNHEALTHY S seconds later: the scheduler stops the task
                                 ("Task failed container health checks")
    DEVSTACK_ELB_UNHEALTHY=1     the task's targets are `unhealthy` in their target groups
                                 (Target.ResponseCodeMismatch); once the service's
                                 healthCheckGracePeriodSeconds have passed since the task started,
                                 the scheduler stops it ("Task failed ELB health checks in ...")

A task stopped for failing a health check counts as a failed task of its deployment, so the
circuit breaker trips on it (its health-check stage), and the service starts a replacement.
"""

from __future__ import annotations

import time
from typing import Any

from moto.elbv2.models import FakeHealthStatus, FakeTargetGroup

from devstack.aws import ecs_model
from devstack.aws.ecs_model import add_event

_UNHEALTHY_ATTR = "_devstack_unhealthy_targets"
_RUNNING_SINCE_ATTR = "_devstack_running_since"  # monotonic time the task became RUNNING
_installed = False


def install() -> None:
    """Target groups answer `unhealthy` for the targets marked so (moto says healthy otherwise)."""
    global _installed
    if _installed:
        return
    _installed = True
    original = FakeTargetGroup.health_for

    def health_for(self: Any, target: dict[str, Any], ec2_backend: Any) -> Any:
        status = original(self, target, ec2_backend)
        if status.status == "healthy" and target["Id"] in self.__dict__.get(_UNHEALTHY_ATTR, set()):
            return FakeHealthStatus(target["Id"], status.port, self.health_check_port, "unhealthy",
                                    "Target.ResponseCodeMismatch",
                                    "Health checks failed with these codes: [500]")
        return status

    setattr(FakeTargetGroup, "health_for", health_for)  # noqa: B010


def has_health_check(backend: Any, task: Any) -> bool:
    return any(c.get("healthCheck") for c in ecs_model.container_definitions(backend, task))


def started(backend: Any, task: Any, life: Any) -> None:
    """Right after the task is RUNNING and registered in its target groups."""
    setattr(task, _RUNNING_SINCE_ATTR, time.monotonic())
    if has_health_check(backend, task):
        _set(task, "HEALTHY")
    else:
        _set(task, "UNKNOWN")
    if life.behaviour.elb_unhealthy:
        elbv2 = ecs_model.elbv2_of(backend)
        for arn, target in life.targets:
            group = elbv2.target_groups.get(arn)
            if group is not None:
                group.__dict__.setdefault(_UNHEALTHY_ATTR, set()).add(target["Id"])


def _set(task: Any, status: str) -> None:
    task.health_status = status
    for container in task.containers:
        container.health_status = status


def failing(backend: Any, task: Any, life: Any, service: Any, now: float) -> str | None:
    """Why a RUNNING service task fails its health checks now, or None."""
    behaviour = life.behaviour
    ran = now - getattr(task, _RUNNING_SINCE_ATTR, life.running_at)
    if behaviour.unhealthy_after_s is not None and has_health_check(backend, task) \
            and ran >= behaviour.unhealthy_after_s:
        _set(task, "UNHEALTHY")
        return "Task failed container health checks"
    grace = float(getattr(service, "health_check_grace_period_seconds", None) or 0)
    if behaviour.elb_unhealthy and life.targets and ran >= grace:
        return f"Task failed ELB health checks in (target-group {life.targets[0][0]})"
    return None


def stopped_unhealthy(service: Any, task: Any, life: Any, reason: str) -> None:
    """Count the failure against the task's deployment and say so in the events."""
    for deployment in service.deployments:
        if deployment["id"] == life.deployment_id:
            deployment["failedTasks"] = deployment.get("failedTasks", 0) + 1
    what = "container health checks" if "container" in reason else "ELB health checks"
    add_event(service, f"(service {service.name}) (task {ecs_model.task_id(task)}) failed {what}.")
