"""Steps every service deployment shares, each safe to repeat when a task is delivered again:
register a task definition only when it differs from the family's latest revision, create a service
with a client token derived from the task id, update it only when it is not already so.

RegisterTaskDefinition and UpdateService are sent once by the SDK (`aws.NOT_REPEATABLE`); when one
fails in a way that leaves open whether AWS got it (a timeout, a dropped connection, a 5xx), the
state is read back: the revision or the deployment is there (follow it) or it is not (send it once
more, at most `SENDS` times in all)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from delegate.ecs import manifests
from delegate.ecs.aws import Aws, client_token
from delegate.ecs.deploys import ServiceBusy, landed
from delegate.ecs.watch import Deadline, describe_service
from delegate.errors import AwsPermanentError, AwsTransientError
from delegate.tasks.registry import TaskLog

SENDS = 3
TASK_TAG = "harness-delegate-task"  # on a task definition revision: the task that registered it



async def latest_revision(aws: Aws, family: str) -> dict[str, Any] | None:
    """The family's latest ACTIVE revision with its tags (who registered it), or None."""
    try:
        answer = await aws.call("ecs", "describe_task_definition", taskDefinition=family, include=["TAGS"])
    except AwsPermanentError as exc:
        if exc.code not in ("ClientException", "InvalidParameterException"):
            raise
        return None
    found = {**answer["taskDefinition"], "tags": answer.get("tags") or []}
    return found if found.get("status", "ACTIVE") == "ACTIVE" else None


async def register_task_definition(aws: Aws, params: dict[str, Any], log: TaskLog,
                                   latest: dict[str, Any] | bool | None = False,
                                   task_id: str | None = None) -> tuple[str, bool]:
    """(ARN, registered now?): the family's latest ACTIVE revision is reused when it already says
    everything the manifest says. `latest`: that revision (with its `tags`) when the caller already
    described it (None: there is none), False to describe it here. A revision registered for a task
    carries its id (TASK_TAG)."""
    family = params["family"]
    comparable = {k: v for k, v in params.items() if k != "tags"}
    if task_id is not None:
        params = {**params, "tags": [*(t for t in params.get("tags") or [] if t.get("key") != TASK_TAG),
                                     {"key": TASK_TAG, "value": task_id}]}
    for sent in range(SENDS + 1):
        found = (latest if isinstance(latest, dict) else None) if sent == 0 and latest is not False \
            else await latest_revision(aws, family)
        if found is not None and manifests.same_task_definition(found, comparable):
            arn = str(found["taskDefinitionArn"])
            ours = {"key": TASK_TAG, "value": task_id} in (found.get("tags") or [])
            if sent or ours:
                earlier = "" if sent else " (an earlier delivery)"
                log.change(f"task definition {arn} is there, registered by this task{earlier}; using it")
                return arn, True
            log.info(f"task definition unchanged: reusing {arn}")
            return arn, False
        if sent == SENDS:
            break
        try:
            registered = await aws.call("ecs", "register_task_definition", **params)
        except AwsTransientError as exc:
            log.warn(f"{exc}; reading the family back to see whether the revision was registered")
            continue
        arn = str(registered["taskDefinition"]["taskDefinitionArn"])
        log.change(f"registered task definition {arn}")
        return arn, True
    raise AwsPermanentError(f"RegisterTaskDefinition of family {family} did not succeed in {SENDS} sends",
                            "RegisterFailed", "register_task_definition")


async def wait_not_draining(aws: Aws, cluster: str, name: str, deadline: Deadline,
                            log: TaskLog) -> dict[str, Any] | None:
    """The ACTIVE service, or None when there is none; a DRAINING one is waited out."""
    told = False
    while True:
        service = await describe_service(aws, cluster, name)
        if service is None or service.get("status") == "ACTIVE":
            return service
        if not told:
            log.info(f"service {name} is DRAINING; waiting until it is gone before creating it again")
            told = True
        if deadline.left() <= 0:
            raise AwsPermanentError(f"service {name} stayed DRAINING past the task's timeout",
                                    "ServiceDraining", "describe_services")
        await asyncio.sleep(min(2.0, max(deadline.left(), 0.0)))


@dataclass
class Started:
    service: dict[str, Any]
    deployment_id: str
    created: bool
    updated: bool


def primary(service: dict[str, Any]) -> dict[str, Any]:
    for deployment in service.get("deployments") or []:
        if deployment.get("status") == "PRIMARY":
            return dict(deployment)
    return {}


async def create_service(aws: Aws, cluster: str, params: dict[str, Any], td_arn: str,
                         desired: int, task_id: str, log: TaskLog,
                         tags: list[dict[str, str]] | None = None) -> Started:
    body = {**params, "cluster": cluster, "taskDefinition": td_arn, "desiredCount": desired,
            "clientToken": client_token(task_id, f"create-service/{params['serviceName']}")}
    if tags:
        body["tags"] = [t for t in body.get("tags") or [] if t.get("key") not in {x["key"] for x in tags}]
        body["tags"] += tags
    try:
        service = (await aws.call("ecs", "create_service", **body))["service"]
    except AwsPermanentError as exc:
        if "not idempotent" not in str(exc):
            raise
        raise ServiceBusy(f"service {params['serviceName']} is being created by another task at the "
                          f"same time ({exc}); run the deploys one after another") from None
    deployment = primary(service)
    log.change(f"created service {service['serviceName']} with {desired} task(s) of {td_arn}")
    return Started(service, str(deployment.get("id")), True, False)


async def update_service(aws: Aws, cluster: str, current: dict[str, Any], params: dict[str, Any],
                         td_arn: str, desired: int | None, force: bool, log: TaskLog) -> Started:
    """UpdateService unless the service already runs (or is rolling out) exactly this."""
    name = current["serviceName"]
    changes = manifests.update_params(params)
    head = primary(current)
    same_td = head.get("taskDefinition") == td_arn
    same = (same_td and manifests.contains(current, changes)
            and (desired is None or current.get("desiredCount") == desired))
    if same and (not force or head.get("rolloutState") == "IN_PROGRESS"):
        log.info(f"service {name} already runs {td_arn} (deployment {head.get('id')}, "
                 f"{head.get('rolloutState')}); not updating it again")
        return Started(current, str(head.get("id")), False, False)
    body: dict[str, Any] = {**changes, "cluster": cluster, "service": name, "taskDefinition": td_arn}
    if desired is not None:
        body["desiredCount"] = desired
    if force:
        body["forceNewDeployment"] = True
    before = [str(d.get("id")) for d in current.get("deployments") or []]
    service, deployment = await _send_update(aws, cluster, body, td_arn, before, log)
    count = f"desiredCount {desired}" if desired is not None else \
        f"keeping desiredCount {service.get('desiredCount')}"
    log.change(f"updated service {name} to {td_arn} ({count}); deployment {deployment.get('id')}")
    return Started(service, str(deployment.get("id")), False, True)


async def _send_update(aws: Aws, cluster: str, body: dict[str, Any], td_arn: str, before: list[str],
                       log: TaskLog) -> tuple[dict[str, Any], dict[str, Any]]:
    """UpdateService, never twice for one update: after an unclear failure, read back first."""
    name = str(body["service"])
    since = time.time()
    for _ in range(SENDS):
        try:
            service = (await aws.call("ecs", "update_service", **body))["service"]
            return service, primary(service)
        except AwsTransientError as exc:
            log.warn(f"{exc}; reading service {name} back to see whether the update reached ECS")
        current = await describe_service(aws, cluster, name)
        if current is None:
            raise AwsPermanentError(f"service {name} is gone from cluster {cluster}",
                                    "ServiceNotFoundException", "update_service")
        found, _ = landed(current, td_arn, before, since)
        if found is not None:
            log.change(f"the update reached ECS: deployment {found}; not sending it again")
            return current, next(d for d in current["deployments"] if d.get("id") == found)
        log.info("the update did not reach ECS; sending it again")
    raise AwsPermanentError(f"UpdateService of {name} did not succeed in {SENDS} sends",
                            "UpdateFailed", "update_service")


async def delete_service(aws: Aws, cluster: str, name: str, log: TaskLog) -> bool:
    """Delete (force: scale to 0 and remove) the service; False when there was none."""
    try:
        await aws.call("ecs", "delete_service", cluster=cluster, service=name, force=True)
    except AwsPermanentError as exc:
        if exc.code in ("ServiceNotFoundException", "ServiceNotActiveException"):
            log.info(f"service {name} does not exist; nothing to delete")
            return False
        raise
    log.change(f"deleted service {name}")
    return True
