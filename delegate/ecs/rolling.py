"""ECS_ROLLING_DEPLOY, ECS_PREPARE_ROLLBACK_DATA and ECS_ROLLING_ROLLBACK."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from delegate.ecs import deploys, failfast, manifests, plan, scaling, servicedeploy, services
from delegate.ecs.aws import Aws
from delegate.ecs.inputs import PrepareRollbackInput, RollingDeployInput, RollingRollbackInput
from delegate.ecs.watch import Deadline, Verdict, describe_service, event_ids, follow
from delegate.errors import TaskError
from delegate.tasks.registry import TaskContext, TaskOutcome

#: scaling is resumed and the lease released even after the task's deadline, for this long
AFTER_DEADLINE_S = 20.0


def outcome(verdict: Verdict, **response: Any) -> TaskOutcome:
    response.update(
        deploymentId=verdict.deployment.get("id") or response.get("deploymentId"),
        rolloutState=verdict.deployment.get("rolloutState"),
        runningCount=verdict.service.get("runningCount"),
        desiredCount=verdict.service.get("desiredCount"),
    )
    return TaskOutcome.ok(message=verdict.message, **response) if verdict.ok \
        else TaskOutcome.failed(verdict.message, **response)


def desired_on_update(data: RollingDeployInput, service: dict[str, Any]) -> int | None:
    """desiredCount is sent only when the task asks for it."""
    if data.desired_count is not None:
        return data.desired_count
    if not data.same_as_already_running and service.get("desiredCount") is not None:
        return int(service["desiredCount"])
    return None


async def deploy(ctx: TaskContext, data: RollingDeployInput) -> TaskOutcome:
    deadline = Deadline.after(ctx.timeout_s)
    svc = manifests.service_definition(data.service_definition)
    cluster, name = data.infrastructure.cluster, svc["serviceName"]
    wanted = scaling.Scaling.from_manifests(
        manifests.load_list(data.scalable_targets, "scalableTargets"),
        manifests.load_list(data.scaling_policies, "scalingPolicies"), cluster, name)
    aws = Aws(data.infrastructure, ctx.proxy, until=deadline.at, log=ctx.log)
    ctx.log.info(f"rolling deploy of service {name} in cluster {cluster} ({aws.region})")
    current = await services.wait_not_draining(aws, cluster, name, deadline, ctx.log)
    if data.dry_run:
        arn, _, change = await plan.prepare(aws, data.task_definition, svc, current,
                                            desired_on_update(data, svc) if current else None, True, ctx.log)
        return TaskOutcome.ok(message="dry run: nothing was changed", dryRun=True, plan=change,
                              serviceName=name, cluster=cluster, taskDefinitionArn=arn)
    if current is None:
        return await _create(ctx, data, aws, deadline, svc, wanted)
    lease, current = await deploys.claim(aws, cluster, current, ctx.task_id, deadline,
                                         data.concurrent_deploy_wait_s, ctx.log)
    try:
        return await _update(ctx, data, aws, deadline, svc, wanted, current, lease)
    finally:
        aws.until = deadline.at + AFTER_DEADLINE_S
        await asyncio.shield(lease.release())


async def _prepare(ctx: TaskContext, data: RollingDeployInput, aws: Aws, svc: dict[str, Any],
                   current: dict[str, Any] | None) -> tuple[str, bool, dict[str, Any]]:
    arn, registered, change = await plan.prepare(
        aws, data.task_definition, svc, current, desired_on_update(data, svc) if current else None,
        False, ctx.log, ctx.task_id)
    assert arn is not None  # only a dry run leaves it out
    return arn, registered, change


async def _clean_up(ctx: TaskContext, data: RollingDeployInput, aws: Aws, verdict: Verdict, td_arn: str,
                    response: dict[str, Any]) -> None:
    if verdict.ok and data.keep_revisions:
        in_use = {str(d.get("taskDefinition")) for d in verdict.service.get("deployments") or []} | {td_arn}
        response["deregistered"] = await plan.clean_up(
            aws, td_arn.rsplit("/", 1)[-1].rsplit(":", 1)[0], data.keep_revisions, in_use, ctx.log)


async def _create(ctx: TaskContext, data: RollingDeployInput, aws: Aws, deadline: Deadline,
                  svc: dict[str, Any], wanted: scaling.Scaling) -> TaskOutcome:
    cluster, name = data.infrastructure.cluster, svc["serviceName"]
    td_arn, registered, change = await _prepare(ctx, data, aws, svc, None)
    desired = data.desired_count if data.desired_count is not None else int(svc.get("desiredCount", 1))
    record = deploys.Record(ctx.task_id, op="create", until=time.time() + deploys.LEASE_S, at=time.time())
    since = servicedeploy.now()
    started = await services.create_service(aws, cluster, svc, td_arn, desired, ctx.task_id, ctx.log,
                                            tags=[{"key": deploys.TAG, "value": record.value()}])
    lease = deploys.Lease(aws, str(started.service["serviceArn"]), record, None)
    try:
        await lease.started(started.deployment_id, "create")
        response = _response(name, cluster, td_arn, registered, started, created=True, updated=False)
        response["plan"] = change
        verdict = await servicedeploy.follow_started(
            aws, cluster, name, started, svc, since, ctx.log, deadline, data.poll_interval_s, (), response,
            data.failed_tasks_limit, failfast.window_s(data.verify_after_completion_s, data.poll_interval_s),
            tick=lease.renew)
        if verdict.ok and wanted:
            aws.until = deadline.at + AFTER_DEADLINE_S
            held = scaling.Suspension(scaling.resource_id(cluster, name))
            response["scalingRestored"] = await scaling.resume(aws, held, str(started.service["serviceArn"]),
                                                               wanted, ctx.log)
        await _clean_up(ctx, data, aws, verdict, td_arn, response)
        return _finish(ctx, name, verdict, response)
    finally:
        aws.until = deadline.at + AFTER_DEADLINE_S
        await asyncio.shield(lease.release())


async def _update(ctx: TaskContext, data: RollingDeployInput, aws: Aws, deadline: Deadline,
                  svc: dict[str, Any], wanted: scaling.Scaling,
                  current: dict[str, Any], lease: deploys.Lease) -> TaskOutcome:
    cluster, name = data.infrastructure.cluster, svc["serviceName"]
    service_arn = str(current["serviceArn"])
    td_arn, registered, change = await _prepare(ctx, data, aws, svc, current)
    earlier = lease.earlier
    started: services.Started | None = None
    gone: str | None = None
    if earlier is not None and earlier.deployment is None:
        found, gone = deploys.landed(current, td_arn, earlier.before, earlier.at)
        if found is not None:
            earlier.deployment = found
            earlier.op = "create" if earlier.op == "create" else "update"
    if earlier is not None and earlier.deployment is not None:
        created, updated = earlier.op == "create", earlier.op == "update"
        did = "created" if created else "updated" if updated else "followed"
        ctx.log.info(f"an earlier delivery of this task {did} service {name} (deployment "
                     f"{earlier.deployment}); following that deployment, not deploying again")
        started = services.Started(current, earlier.deployment, created, updated)
        await lease.started(earlier.deployment, earlier.op)
    elif gone is not None:
        ctx.log.info(f"an earlier delivery of this task updated service {name}, and ECS has since "
                     f"undone it: {gone}; not deploying again")
    held = await scaling.suspend(aws, current, cluster, ctx.task_id, ctx.log)
    verdict: Verdict | None = None
    response: dict[str, Any] = {}
    since = servicedeploy.now()
    try:
        if gone is not None:
            verdict = Verdict(False, f"the deployment of {td_arn} was rolled back by ECS: {gone}", current)
            started = services.Started(current, "", False, True)
        if started is None:
            started = await services.update_service(
                aws, cluster, current, svc, td_arn, desired_on_update(data, svc),
                data.force_new_deployment, ctx.log)
            await lease.started(started.deployment_id, "update" if started.updated else "follow")
        response = _response(name, cluster, td_arn, registered, started, started.created, started.updated)
        response["plan"] = change
        if verdict is None:
            verdict = await servicedeploy.follow_started(
                aws, cluster, name, started, svc, since, ctx.log, deadline, data.poll_interval_s,
                event_ids(current), response, data.failed_tasks_limit,
                failfast.window_s(data.verify_after_completion_s, data.poll_interval_s), tick=lease.renew)
    finally:
        # Scaling comes back whatever happened: the manifests' on success, what was found otherwise.
        aws.until = deadline.at + AFTER_DEADLINE_S
        restored = await asyncio.shield(scaling.resume(
            aws, held, service_arn, wanted if verdict is not None and verdict.ok else None, ctx.log))
    assert started is not None
    response["scalingRestored"] = restored
    await _clean_up(ctx, data, aws, verdict, td_arn, response)
    return _finish(ctx, name, verdict, response)


def _response(name: str, cluster: str, td_arn: str, registered: bool, started: services.Started,
              created: bool, updated: bool) -> dict[str, Any]:
    return {
        "serviceName": name, "serviceArn": started.service.get("serviceArn"), "cluster": cluster,
        "taskDefinitionArn": td_arn, "taskDefinitionRegistered": registered,
        "created": created, "updated": updated, "deploymentId": started.deployment_id or None,
    }


def _finish(ctx: TaskContext, name: str, verdict: Verdict, response: dict[str, Any]) -> TaskOutcome:
    if verdict.ok:
        ctx.log.info(f"deploy of {name} succeeded: {verdict.message}")
    else:
        ctx.log.error(f"deploy of {name} failed: {verdict.message}")
    return outcome(verdict, **response)


async def prepare_rollback(ctx: TaskContext, data: PrepareRollbackInput) -> TaskOutcome:
    svc = manifests.service_definition(data.service_definition)
    cluster, name = data.infrastructure.cluster, svc["serviceName"]
    aws = Aws(data.infrastructure, ctx.proxy)
    current = await describe_service(aws, cluster, name)
    if current is None:
        ctx.log.info(f"service {name} does not exist yet: a rollback will delete it")
        return TaskOutcome.ok(rollbackData={"cluster": cluster, "serviceName": name, "existed": False})
    found = await scaling.read(aws, cluster, name)
    head = services.primary(current)
    data_out = {
        "cluster": cluster, "serviceName": name, "existed": True,
        "taskDefinitionArn": head.get("taskDefinition") or current.get("taskDefinition"),
        "desiredCount": current.get("desiredCount"),
        **json.loads(manifests.dump(found.to_json())),
    }
    ctx.log.info(f"rollback data: service {name} runs {data_out['taskDefinitionArn']} with "
                 f"{data_out['desiredCount']} task(s); {len(found.targets)} scalable target(s)")
    return TaskOutcome.ok(rollbackData=data_out)


async def rollback(ctx: TaskContext, data: RollingRollbackInput) -> TaskOutcome:
    deadline = Deadline.after(ctx.timeout_s)
    rb = data.rollback_data
    cluster, name = rb.get("cluster") or data.infrastructure.cluster, rb.get("serviceName")
    if not isinstance(name, str) or "existed" not in rb:
        raise TaskError("rollbackData: give the rollbackData an ECS_PREPARE_ROLLBACK_DATA task returned")
    aws = Aws(data.infrastructure, ctx.proxy)
    if not rb["existed"]:
        deleted = await services.delete_service(aws, cluster, name, ctx.log)
        return TaskOutcome.ok(serviceName=name, cluster=cluster, deleted=deleted)
    td_arn = rb.get("taskDefinitionArn")
    if not isinstance(td_arn, str):
        raise TaskError("rollbackData.taskDefinitionArn is missing")
    current = await describe_service(aws, cluster, name)
    if current is None:
        return TaskOutcome.failed(f"service {name} no longer exists in cluster {cluster}; nothing to roll "
                                  "back to", serviceName=name, cluster=cluster)
    previous = scaling.Scaling(list(rb.get("scalableTargets") or []), list(rb.get("scalingPolicies") or []))
    aws.until = deadline.at
    held = await scaling.suspend(aws, current, cluster, ctx.task_id, ctx.log)
    verdict: Verdict | None = None
    try:
        started = await services.update_service(aws, cluster, current, {}, td_arn,
                                                rb.get("desiredCount"), False, ctx.log)
        verdict = await follow(aws, cluster, name, started.deployment_id, ctx.log, deadline,
                               data.poll_interval_s, event_ids(current))
    finally:
        aws.until = deadline.at + AFTER_DEADLINE_S
        await asyncio.shield(scaling.resume(aws, held, str(current["serviceArn"]), previous or None, ctx.log))
    return outcome(verdict, serviceName=name, cluster=cluster, taskDefinitionArn=td_arn,
                   scalingRestored=bool(previous))
