"""A deploy judged by its own *service deployment* (ECS's service-deployments API).

After CreateService/UpdateService, the service deployment that call started is found through
ListServiceDeployments (its target service revision carries the deployment's number; otherwise the
newest one made since the call). Its ARN goes in every result. A service whose
`deploymentConfiguration.strategy` is BLUE_GREEN, LINEAR or CANARY is followed through
DescribeServiceDeployments: each lifecycle stage, traffic shift and lifecycle hook goes to the task
log, SUCCESSFUL is success, STOPPED and ROLLBACK_* are failure with ECS's reason. Rolling deploys
keep being judged by their deployment (`watch.follow`). If the task is aborted while following,
the service deployment is stopped with rollback (StopServiceDeployment) before the task ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from delegate.ecs import failfast
from delegate.ecs.aws import Aws
from delegate.ecs.services import Started
from delegate.ecs.watch import Deadline, EventStream, Verdict, describe_service, follow
from delegate.errors import AwsError, AwsPermanentError
from delegate.tasks.registry import TaskLog

NATIVE = ("BLUE_GREEN", "LINEAR", "CANARY")
FAILED = ("STOPPED", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED")
_FIND_TRIES_S = 10.0  # ECS may list a new service deployment a moment after UpdateService answers


def strategy_of(service_definition: dict[str, Any]) -> str:
    config = service_definition.get("deploymentConfiguration") or {}
    return str(config.get("strategy") or "ROLLING").upper()


async def find(aws: Aws, cluster: str, name: str, deployment_id: str,
               since: datetime) -> tuple[str | None, str | None]:
    """(ARN of the service deployment that deployment `deployment_id` belongs to, None) or
    (None, why not): the API refused (not offered by the endpoint, or not allowed by the policy),
    or nothing matches yet."""
    number = deployment_id.rsplit("/", 1)[-1]
    try:
        answer = await aws.call("ecs", "list_service_deployments", cluster=cluster, service=name,
                                maxResults=20)
    except AwsPermanentError as exc:
        return None, str(exc)
    briefs = answer.get("serviceDeployments") or []
    for brief in briefs:
        if str(brief.get("targetServiceRevisionArn", "")).rsplit("/", 1)[-1] == number:
            return str(brief["serviceDeploymentArn"]), None
    recent = [b for b in briefs if b.get("createdAt") and b["createdAt"] >= since - timedelta(seconds=60)]
    if recent:
        return str(recent[0]["serviceDeploymentArn"]), None
    return None, f"ListServiceDeployments lists none for deployment {deployment_id}"


async def find_soon(aws: Aws, cluster: str, name: str, deployment_id: str, since: datetime,
                    deadline: Deadline, poll_s: float, patient: bool) -> tuple[str | None, str | None]:
    """`find`, asked again for a few seconds when `patient` and nothing matches yet."""
    give_up = time.monotonic() + (min(_FIND_TRIES_S, max(deadline.left(), 0.0)) if patient else 0.0)
    while True:
        arn, why = await find(aws, cluster, name, deployment_id, since)
        if arn is not None or time.monotonic() >= give_up or (why and "ListServiceDeployments" not in why):
            return arn, why
        await asyncio.sleep(min(poll_s, 1.0))


async def describe(aws: Aws, arn: str) -> dict[str, Any] | None:
    answer = await aws.call("ecs", "describe_service_deployments", serviceDeploymentArns=[arn])
    found = answer.get("serviceDeployments") or []
    return dict(found[0]) if found else None


def summary(sd: dict[str, Any]) -> dict[str, Any]:
    """What the result carries of a service deployment."""
    finished = sd.get("finishedAt")
    alarms = sd.get("alarms") or {}
    return {
        "serviceDeploymentArn": sd.get("serviceDeploymentArn"),
        "serviceDeploymentStatus": sd.get("status"),
        "serviceDeploymentReason": sd.get("statusReason"),
        "lifecycleStage": sd.get("lifecycleStage"),
        "triggeredAlarms": list(alarms.get("triggeredAlarmNames") or []),
        "rollbackReason": (sd.get("rollback") or {}).get("reason"),
        "finishedAt": finished.isoformat() if isinstance(finished, datetime) else finished,
    }


class Progress:
    """Stage, traffic and hook changes of one service deployment, each told once."""

    def __init__(self, log: TaskLog) -> None:
        self._log = log
        self._said: set[str] = set()

    def _once(self, line: str, warn: bool = False) -> None:
        if line not in self._said:
            self._said.add(line)
            (self._log.warn if warn else self._log.info)(line)

    def show(self, sd: dict[str, Any]) -> None:
        self._once(f"service deployment {sd.get('status')}, stage {sd.get('lifecycleStage')}")
        target = sd.get("targetServiceRevision") or {}
        test, prod = target.get("requestedTestTrafficWeight"), target.get("requestedProductionTrafficWeight")
        if prod is not None or test is not None:
            self._once(f"traffic to the new revision: production {prod or 0:g}%, test {test or 0:g}% "
                       f"({target.get('runningTaskCount', 0)} of {target.get('requestedTaskCount', 0)} "
                       "tasks running)")
        for hook in sd.get("lifecycleHookDetails") or []:
            self._once(f"lifecycle hook {hook.get('hookId')} ({hook.get('targetType')} "
                       f"{hook.get('targetArn') or ''}): {hook.get('status')}".replace(" )", ")"),
                       warn=hook.get("status") in ("FAILED", "TIMED_OUT"))
        for name in (sd.get("alarms") or {}).get("triggeredAlarmNames") or []:
            self._once(f"alarm {name} triggered", warn=True)


async def follow_native(aws: Aws, cluster: str, name: str, arn: str, deployment_id: str, log: TaskLog,
                        deadline: Deadline, poll_s: float,
                        known_events: Iterable[str],
                        tick: Callable[[], Awaitable[None]] | None = None) -> tuple[Verdict, dict[str, Any]]:
    """The verdict and the service deployment as last described."""
    events, progress = EventStream(log, known_events), Progress(log)
    log.info(f"following service deployment {arn}")
    while True:
        sd = await describe(aws, arn)
        service = await describe_service(aws, cluster, name) or {}
        events.show(service)
        mine: dict[str, Any] = next(
            (d for d in service.get("deployments") or [] if d.get("id") == deployment_id), {})
        if sd is None:
            return Verdict(False, f"service deployment {arn} is gone", service, mine), {}
        progress.show(sd)
        status, reason = sd.get("status"), sd.get("statusReason") or "no reason given"
        if status == "SUCCESSFUL":
            verdict = Verdict(True, f"service deployment {arn} SUCCESSFUL: {reason}", service, mine)
        elif status in FAILED:
            verdict = Verdict(False, f"service deployment {arn} {status}: {reason}", service, mine)
        elif deadline.left() <= 0:
            verdict = Verdict(False, f"service deployment {arn} did not finish within the task's timeout "
                                     f"({status}, stage {sd.get('lifecycleStage')})", service, mine)
        else:
            if tick is not None:
                await tick()
            await asyncio.sleep(max(0.0, min(poll_s, deadline.left())))
            continue
        return verdict, sd


async def stop(aws: Aws, arn: str, log: TaskLog) -> None:
    """StopServiceDeployment with rollback; a deployment that already ended is left alone."""
    try:
        await aws.call("ecs", "stop_service_deployment", serviceDeploymentArn=arn, stopType="ROLLBACK")
        log.warn(f"aborted: service deployment {arn} stopped with rollback")
    except AwsError as exc:
        log.warn(f"aborted: could not stop service deployment {arn}: {exc}")


async def follow_started(aws: Aws, cluster: str, name: str, started: Started, svc: dict[str, Any],
                         since: datetime, log: TaskLog, deadline: Deadline, poll_s: float,
                         known_events: Iterable[str], response: dict[str, Any],
                         failed_tasks_limit: int = 0, verify_s: float = 0.0,
                         tick: Callable[[], Awaitable[None]] | None = None) -> Verdict:
    """Follow what CreateService/UpdateService started, by its service deployment for a native
    strategy, by its deployment otherwise (failing fast, then watched for `verify_s` after it
    completes); the service deployment's ARN and state go in `response`."""
    strategy = strategy_of(svc)
    response["strategy"] = strategy
    arn, why = await find_soon(aws, cluster, name, started.deployment_id, since, deadline, poll_s,
                               patient=strategy in NATIVE)
    response["serviceDeploymentArn"] = arn
    if arn is None and strategy in NATIVE:
        return Verdict(False, f"no service deployment found for deployment {started.deployment_id} of "
                              f"service {name} ({why}): a {strategy} deploy is judged by it")
    if arn is None:
        log.warn(f"service deployment not recorded ({why}); following deployment {started.deployment_id}")
    try:
        if strategy in NATIVE and arn is not None:
            verdict, sd = await follow_native(aws, cluster, name, arn, started.deployment_id, log,
                                              deadline, poll_s, known_events, tick)
            response.update(summary(sd))
            return verdict
        known = list(known_events)
        fast = failfast.FailFast(svc, failed_tasks_limit, known)
        verdict = await follow(aws, cluster, name, started.deployment_id, log, deadline, poll_s, known,
                               fast.check, tick)
        return await failfast.verify_after_completion(aws, cluster, name, verdict, log, deadline,
                                                      poll_s, verify_s)
    except asyncio.CancelledError as exc:
        # An abort stops the deployment; a delegate shutting down hands the task back instead, and
        # the next delivery follows the same deployment (docs/ecs-tasks.md, re-delivery).
        if arn is not None and "abort" in " ".join(map(str, exc.args)):
            await asyncio.shield(stop(aws, arn, log))
        raise


def now() -> datetime:
    return datetime.now(UTC)
