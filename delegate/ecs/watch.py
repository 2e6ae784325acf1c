"""Follow one service deployment to its end, judged by that deployment alone.

The deployment is the one the delegate itself started (its id from the CreateService/UpdateService
answer). COMPLETED is success; FAILED, gone, replaced or rolled back is failure, whatever a waiter
would say. While waiting, new service events (deduplicated by id, oldest first), the deployment's
counts when they change, and the reasons of its stopped tasks go to the task log. Every wait ends at
the task's deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from delegate.ecs.aws import Aws
from delegate.tasks.registry import TaskLog


@dataclass
class Verdict:
    ok: bool
    message: str
    service: dict[str, Any] = field(default_factory=dict)
    deployment: dict[str, Any] = field(default_factory=dict)


@dataclass
class Deadline:
    at: float  # time.monotonic()

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def left(self) -> float:
        return self.at - time.monotonic()


class EventStream:
    """Service events into the task log, each once; `known` ones (there before the deploy began)
    are not shown."""

    def __init__(self, log: TaskLog, known: Iterable[str]) -> None:
        self._log = log
        self._seen: set[str] = set(known)

    def show(self, service: dict[str, Any]) -> None:
        for event in reversed(service.get("events") or []):
            if event.get("id") in self._seen:
                continue
            self._seen.add(str(event.get("id")))
            self._log.info(f"event: {event.get('message')}")


def event_ids(service: dict[str, Any] | None) -> list[str]:
    return [str(e.get("id")) for e in (service or {}).get("events") or []]


async def describe_service(aws: Aws, cluster: str, name: str) -> dict[str, Any] | None:
    """The service if it exists and is ACTIVE or DRAINING; None when missing or INACTIVE."""
    answer = await aws.call("ecs", "describe_services", cluster=cluster, services=[name],
                            include=["TAGS"])
    for service in answer.get("services") or []:
        if service.get("status") in ("ACTIVE", "DRAINING"):
            return dict(service)
    return None


class StoppedTasks:
    """Reasons of the deployment's stopped tasks, each task once."""

    def __init__(self, aws: Aws, cluster: str, service_name: str, log: TaskLog) -> None:
        self._aws, self._cluster, self._name, self._log = aws, cluster, service_name, log
        self._seen: set[str] = set()
        self.reasons: list[str] = []

    async def show(self, deployment_id: str) -> None:
        listed = await self._aws.call("ecs", "list_tasks", cluster=self._cluster,
                                      serviceName=self._name, desiredStatus="STOPPED")
        arns = [a for a in listed.get("taskArns") or [] if a not in self._seen][:100]
        if not arns:
            return
        described = await self._aws.call("ecs", "describe_tasks", cluster=self._cluster, tasks=arns)
        for task in described.get("tasks") or []:
            if task.get("lastStatus") != "STOPPED":
                continue
            self._seen.add(task["taskArn"])
            if task.get("startedBy") not in (deployment_id, None):
                continue
            codes = [c.get("exitCode") for c in task.get("containers") or [] if c.get("exitCode") is not None]
            reason = f"{task.get('stoppedReason') or 'no reason given'}"
            if task.get("stopCode"):
                reason = f"{task['stopCode']}: {reason}"
            if codes:
                reason += f" (exit code {', '.join(map(str, codes))})"
            self.reasons.append(reason)
            self._log.warn(f"task {task['taskArn'].rsplit('/', 1)[-1]} stopped: {reason}")


def _progress(d: dict[str, Any]) -> str:
    return (f"deployment {d.get('id')}: {d.get('rolloutState', d.get('status'))}, "
            f"running {d.get('runningCount', 0)}/{d.get('desiredCount', 0)}, "
            f"pending {d.get('pendingCount', 0)}, failed tasks {d.get('failedTasks', 0)}")


async def follow(
    aws: Aws,
    cluster: str,
    name: str,
    deployment_id: str,
    log: TaskLog,
    deadline: Deadline,
    poll_s: float,
    known_events: Iterable[str] = (),
    check: Callable[[dict[str, Any], dict[str, Any] | None], str | None] | None = None,
    tick: Callable[[], Awaitable[None]] | None = None,
) -> Verdict:
    """`check` may fail the deploy early (failfast.FailFast.check) with the reason it returns;
    `tick` runs once per poll (a deploy renews its lease)."""
    events = EventStream(log, known_events)
    stopped = StoppedTasks(aws, cluster, name, log)
    last_progress, failed_seen = "", 0
    log.info(f"following deployment {deployment_id} of service {name}")
    while True:
        service = await describe_service(aws, cluster, name)
        if service is None:
            return Verdict(False, f"service {name} is gone from cluster {cluster} (deleted while deploying)")
        events.show(service)
        deployments = service.get("deployments") or []
        mine = next((d for d in deployments if d.get("id") == deployment_id), None)
        primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
        if mine is not None:
            progress = _progress(mine)
            if progress != last_progress:
                log.info(progress)
                last_progress = progress
            if int(mine.get("failedTasks") or 0) > failed_seen:
                failed_seen = int(mine.get("failedTasks") or 0)
                await stopped.show(deployment_id)
        verdict = _judge(service, mine, primary, deployment_id, name)
        why = check(service, mine) if verdict is None and check is not None else None
        if why:
            if mine is not None and int(mine.get("failedTasks") or 0) > failed_seen:
                failed_seen = int(mine.get("failedTasks") or 0)
            verdict = Verdict(False, f"deployment {deployment_id} of service {name} failed fast: {why}")
        if verdict is not None:
            if not verdict.ok and mine is not None and failed_seen:
                await stopped.show(deployment_id)
            if not verdict.ok and stopped.reasons:
                verdict.message += f"; last stopped task: {stopped.reasons[-1]}"
            verdict.service, verdict.deployment = service, mine or {}
            return verdict
        if deadline.left() <= 0:
            state = _progress(mine) if mine else "not seen"
            return Verdict(False, f"deployment {deployment_id} of service {name} did not finish within "
                                  f"the task's timeout ({state})", service, mine or {})
        if tick is not None:
            await tick()
        await asyncio.sleep(max(0.0, min(poll_s, deadline.left())))


def _judge(service: dict[str, Any], mine: dict[str, Any] | None, primary: dict[str, Any] | None,
           deployment_id: str, name: str) -> Verdict | None:
    if mine is None:
        why = (primary or {}).get("rolloutStateReason") or ""
        if "rolling back" in why.lower():
            return Verdict(False, f"deployment {deployment_id} was rolled back by ECS: {why}")
        told = rolled_back_reason(service, deployment_id)
        if told:
            return Verdict(False, f"deployment {deployment_id} was rolled back by ECS: {told}")
        return Verdict(False, f"deployment {deployment_id} of service {name} is gone "
                              f"(replaced by {(primary or {}).get('id')}); it did not complete")
    state = mine.get("rolloutState")
    if state == "COMPLETED":
        return Verdict(True, f"deployment {deployment_id} completed: {mine.get('runningCount')} "
                             f"tasks running")
    if state == "FAILED":
        reason = mine.get("rolloutStateReason") or "no reason given"
        if primary is not None and primary.get("id") != deployment_id:
            reason += f"; ECS is rolling back ({primary.get('rolloutStateReason')})"
        return Verdict(False, f"deployment {deployment_id} failed: {reason}")
    if primary is not None and primary.get("id") != deployment_id:
        why = primary.get("rolloutStateReason") or ""
        rolled = "rolled back" if "rolling back" in why.lower() else "replaced"
        return Verdict(False, f"deployment {deployment_id} was {rolled} by deployment "
                              f"{primary.get('id')}: {why}")
    if state is None and len(service.get("deployments") or []) == 1 \
            and mine.get("runningCount") == mine.get("desiredCount") and not mine.get("pendingCount"):
        return Verdict(True, f"deployment {deployment_id} is the only one and runs every task")
    return None


def rolled_back_reason(service: dict[str, Any], deployment_id: str | None,
                       since: float = 0.0) -> str | None:
    """What the service's events since `since` (epoch s, a few seconds of clock skew allowed) say
    about a deployment's failure and rollback, if anything."""
    said: list[str] = []
    for event in service.get("events") or []:  # newest first
        at = event.get("createdAt")
        if since and hasattr(at, "timestamp") and at.timestamp() < since - 5:
            break
        message = str(event.get("message") or "")
        failed = "fail" in message.lower() if deployment_id is None else \
            (deployment_id in message and "fail" in message.lower())
        if failed:
            said.append(message)
        if "rolling back to deployment" in message.lower() and len(said) < 2:
            said.append(message)
        if len(said) >= 2:
            break
    return "; ".join(dict.fromkeys(said)) or None
