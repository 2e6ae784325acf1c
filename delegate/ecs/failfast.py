"""Fail fast, and do not call a crash loop a success.

Without the circuit breaker ECS replaces failing tasks forever and a deploy would wait out its
timeout. `FailFast` ends it early: after `failedTasksLimit` failed tasks of the deployment, or at
ECS's "unable to consistently start tasks successfully" event (with the breaker on, ECS decides).

A revision whose tasks start, reach steady state and then exit would be reported a success the
moment its deployment completes. `verify_after_completion` watches the deployment for a while
after that: a task of it that stops by itself (its `failedTasks` grows), or the deployment being
replaced or rolled back, fails the deploy with the stopped task's reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from delegate.ecs.aws import Aws
from delegate.ecs.watch import Deadline, EventStream, StoppedTasks, Verdict, describe_service
from delegate.tasks.registry import TaskLog

UNSTABLE = "unable to consistently start tasks"
VERIFY_POLLS = 5  # default window after completion: this many poll intervals


class FailFast:
    def __init__(self, service_definition: dict[str, Any], limit: int, known_events: Iterable[str]) -> None:
        config = service_definition.get("deploymentConfiguration") or {}
        self.breaker = bool((config.get("deploymentCircuitBreaker") or {}).get("enable"))
        self.limit = limit
        self._known = set(known_events)

    def check(self, service: dict[str, Any], deployment: dict[str, Any] | None) -> str | None:
        """Why the deploy should fail now, or None. Left to ECS when the breaker is on."""
        if self.breaker or deployment is None:
            return None
        failed = int(deployment.get("failedTasks") or 0)
        if self.limit and failed >= self.limit:
            return (f"{failed} tasks of deployment {deployment.get('id')} failed (failedTasksLimit "
                    f"{self.limit}; the service has no circuit breaker to stop it)")
        for event in service.get("events") or []:
            if event.get("id") in self._known:
                continue
            message = str(event.get("message") or "")
            if UNSTABLE in message:
                return f"ECS: {message}"
        return None


def window_s(given: float | None, poll_s: float) -> float:
    return given if given is not None else VERIFY_POLLS * poll_s


async def verify_after_completion(
    aws: Aws, cluster: str, name: str, verdict: Verdict, log: TaskLog, deadline: Deadline,
    poll_s: float, seconds: float,
) -> Verdict:
    """Watch a completed deployment for `seconds` (bounded by the task's deadline)."""
    deployment_id = str(verdict.deployment.get("id") or "")
    if not verdict.ok or seconds <= 0 or not deployment_id:
        return verdict
    baseline = int(verdict.deployment.get("failedTasks") or 0)
    log.info(f"watching deployment {deployment_id} for {seconds:g} s after completion")
    events = EventStream(log, [str(e.get("id")) for e in verdict.service.get("events") or []])
    stopped = StoppedTasks(aws, cluster, name, log)
    end = Deadline.after(min(seconds, max(deadline.left(), 0.0)))
    while True:
        await asyncio.sleep(max(0.0, min(poll_s, end.left())))
        service = await describe_service(aws, cluster, name)
        if service is None:
            return Verdict(False, f"service {name} is gone after its deployment completed")
        events.show(service)
        mine = next((d for d in service.get("deployments") or [] if d.get("id") == deployment_id), None)
        primary = next((d for d in service.get("deployments") or [] if d.get("status") == "PRIMARY"), None)
        if mine is None or primary is None or primary.get("id") != deployment_id:
            return Verdict(False, f"deployment {deployment_id} completed, then was replaced by "
                                  f"{(primary or {}).get('id')} within {seconds:g} s "
                                  f"({(primary or {}).get('rolloutStateReason')})", service, mine or {})
        failed = int(mine.get("failedTasks") or 0)
        if failed > baseline:
            await stopped.show(deployment_id)
            why = f"; last stopped task: {stopped.reasons[-1]}" if stopped.reasons else ""
            return Verdict(False, f"deployment {deployment_id} completed, then {failed - baseline} of its "
                                  f"tasks stopped within {seconds:g} s{why}", service, mine)
        if end.left() <= 0:
            verdict.service, verdict.deployment = service, mine
            verdict.message += f"; no task stopped in the {seconds:g} s after"
            return verdict
