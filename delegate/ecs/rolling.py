"""ECS_ROLLING_DEPLOY, ECS_PREPARE_ROLLBACK_DATA and ECS_ROLLING_ROLLBACK."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from delegate.ecs import failfast, manifests, plan, scaling, servicedeploy, services
from delegate.ecs.aws import Aws
from delegate.ecs.inputs import PrepareRollbackInput, RollingDeployInput, RollingRollbackInput
from delegate.ecs.watch import Deadline, Verdict, describe_service, event_ids, follow
from delegate.errors import TaskError
from delegate.tasks.registry import TaskContext, TaskLog, TaskOutcome


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


async def _give_scaling_back(aws: Aws, found: scaling.Scaling, service_arn: str,
                             log: TaskLog) -> None:
    await scaling.register(aws, found, log)
    if found:
        await scaling.forget(aws, service_arn)


async def deploy(ctx: TaskContext, data: RollingDeployInput) -> TaskOutcome:
    deadline = Deadline.after(ctx.timeout_s)
    svc = manifests.service_definition(data.service_definition)
    cluster, name = data.infrastructure.cluster, svc["serviceName"]
    wanted = scaling.Scaling.from_manifests(
        manifests.load_list(data.scalable_targets, "scalableTargets"),
        manifests.load_list(data.scaling_policies, "scalingPolicies"), cluster, name)
    aws = Aws(data.infrastructure, ctx.proxy)
    ctx.log.info(f"rolling deploy of service {name} in cluster {cluster} ({aws.region})")
    current = await services.wait_not_draining(aws, cluster, name, deadline, ctx.log)
    arn, registered, change = await plan.prepare(aws, data.task_definition, svc, current,
                                                 desired_on_update(data, svc) if current else None,
                                                 data.dry_run, ctx.log)
    if data.dry_run or arn is None:
        return TaskOutcome.ok(message="dry run: nothing was changed", dryRun=True, plan=change,
                              serviceName=name, cluster=cluster, taskDefinitionArn=arn)
    td_arn = arn
    found = scaling.Scaling()
    since = servicedeploy.now()
    if current is None:
        desired = data.desired_count if data.desired_count is not None else int(svc.get("desiredCount", 1))
        started = await services.create_service(aws, cluster, svc, td_arn, desired, ctx.task_id, ctx.log)
    else:
        service_arn = str(current["serviceArn"])
        found = await scaling.read(aws, cluster, name)
        if found:
            await scaling.remember(aws, service_arn, found, ctx.log)
            await scaling.deregister(aws, found, ctx.log)
        else:
            found = await scaling.recall(aws, service_arn)
            if found:
                ctx.log.info("found the auto scaling an earlier delivery of this deploy took off; "
                             "it is restored after the deploy")
        try:
            started = await services.update_service(
                aws, cluster, current, svc, td_arn, desired_on_update(data, svc),
                data.force_new_deployment, ctx.log)
        except BaseException:
            # a cancelled deploy (abort, shutdown) still puts the auto scaling back: shielded, so a
            # second cancellation cannot cut the clean-up short
            await asyncio.shield(_give_scaling_back(aws, found, service_arn, ctx.log))
            raise
    response: dict[str, Any] = {
        "serviceName": name, "serviceArn": started.service.get("serviceArn"), "cluster": cluster,
        "taskDefinitionArn": td_arn, "taskDefinitionRegistered": registered,
        "created": started.created, "updated": started.updated, "deploymentId": started.deployment_id,
        "plan": change,
    }
    verdict: Verdict | None = None
    try:
        verdict = await servicedeploy.follow_started(aws, cluster, name, started, svc, since, ctx.log,
                                                     deadline, data.poll_interval_s, event_ids(current),
                                                     response, data.failed_tasks_limit,
                                                     failfast.window_s(data.verify_after_completion_s,
                                                                       data.poll_interval_s))
    finally:
        # Scaling comes back whatever happened: the manifests' on success, what was found otherwise.
        restore = wanted if (verdict is not None and verdict.ok and wanted) else found
        await scaling.register(aws, restore, ctx.log)
        response["scalingRestored"] = bool(restore)
        if found:
            await scaling.forget(aws, str(started.service.get("serviceArn")))
    if verdict.ok and data.keep_revisions:
        in_use = {str(d.get("taskDefinition")) for d in verdict.service.get("deployments") or []} | {td_arn}
        response["deregistered"] = await plan.clean_up(
            aws, td_arn.rsplit("/", 1)[-1].rsplit(":", 1)[0], data.keep_revisions, in_use, ctx.log)
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
    found = await scaling.read(aws, cluster, name)
    await scaling.deregister(aws, found, ctx.log)
    verdict: Verdict | None = None
    try:
        started = await services.update_service(aws, cluster, current, {}, td_arn,
                                                rb.get("desiredCount"), False, ctx.log)
        verdict = await follow(aws, cluster, name, started.deployment_id, ctx.log, deadline,
                               data.poll_interval_s, event_ids(current))
    finally:
        await scaling.register(aws, previous, ctx.log)
    return outcome(verdict, serviceName=name, cluster=cluster, taskDefinitionArn=td_arn,
                   scalingRestored=bool(previous))
