"""Steps every service deployment shares, each safe to repeat when a task is delivered again:
register a task definition only when it differs from the family's latest revision, create a service
with a client token derived from the task id, update it only when it is not already so."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from delegate.ecs import manifests
from delegate.ecs.aws import Aws, client_token
from delegate.ecs.watch import Deadline, describe_service
from delegate.errors import AwsPermanentError
from delegate.tasks.registry import TaskLog


async def register_task_definition(aws: Aws, params: dict[str, Any], log: TaskLog,
                                   latest: dict[str, Any] | bool | None = False) -> tuple[str, bool]:
    """(ARN, registered now?): the family's latest ACTIVE revision is reused when it already says
    everything the manifest says. `latest`: that revision when the caller already described it
    (None: there is none), False to describe it here."""
    family = params["family"]
    found = latest if isinstance(latest, dict) else None
    if latest is False:
        try:
            answer = await aws.call("ecs", "describe_task_definition", taskDefinition=family)
            found = answer["taskDefinition"]
        except AwsPermanentError as exc:
            if exc.code not in ("ClientException", "InvalidParameterException"):
                raise
    if found is not None and manifests.same_task_definition(found, params):
        arn = str(found["taskDefinitionArn"])
        log.info(f"task definition unchanged: reusing {arn}")
        return arn, False
    registered = await aws.call("ecs", "register_task_definition", **params)
    arn = str(registered["taskDefinition"]["taskDefinitionArn"])
    log.info(f"registered task definition {arn}")
    return arn, True


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
    service = (await aws.call("ecs", "create_service", **body))["service"]
    deployment = primary(service)
    log.info(f"created service {service['serviceName']} with {desired} task(s) of {td_arn}")
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
    service = (await aws.call("ecs", "update_service", **body))["service"]
    deployment = primary(service)
    count = f"desiredCount {desired}" if desired is not None else \
        f"keeping desiredCount {service.get('desiredCount')}"
    log.info(f"updated service {name} to {td_arn} ({count}); deployment {deployment.get('id')}")
    return Started(service, str(deployment.get("id")), False, True)


async def delete_service(aws: Aws, cluster: str, name: str, log: TaskLog) -> bool:
    """Delete (force: scale to 0 and remove) the service; False when there was none."""
    try:
        await aws.call("ecs", "delete_service", cluster=cluster, service=name, force=True)
    except AwsPermanentError as exc:
        if exc.code in ("ServiceNotFoundException", "ServiceNotActiveException"):
            log.info(f"service {name} does not exist; nothing to delete")
            return False
        raise
    log.info(f"deleted service {name}")
    return True
