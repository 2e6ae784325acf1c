"""ECS_CANARY_DEPLOY and ECS_CANARY_DELETE: a small copy of the service beside the real one."""

from __future__ import annotations

from delegate.ecs import manifests, scaling, services
from delegate.ecs.aws import Aws
from delegate.ecs.inputs import CanaryDeleteInput, CanaryDeployInput
from delegate.ecs.rolling import outcome
from delegate.ecs.watch import Deadline, Verdict, describe_service, event_ids, follow
from delegate.tasks.registry import TaskContext, TaskOutcome


async def deploy(ctx: TaskContext, data: CanaryDeployInput) -> TaskOutcome:
    deadline = Deadline.after(ctx.timeout_s)
    td = manifests.task_definition(data.task_definition)
    svc = manifests.service_definition(data.service_definition)
    cluster = data.infrastructure.cluster
    name = f"{svc['serviceName']}{data.suffix}"
    svc["serviceName"] = name
    wanted = scaling.Scaling.from_manifests(
        manifests.load_list(data.scalable_targets, "scalableTargets"),
        manifests.load_list(data.scaling_policies, "scalingPolicies"), cluster, name)
    aws = Aws(data.infrastructure, ctx.proxy)
    ctx.log.info(f"canary deploy: service {name} with {data.desired_count} task(s) in cluster {cluster}")
    td_arn, registered = await services.register_task_definition(aws, td, ctx.log)
    current = await services.wait_not_draining(aws, cluster, name, deadline, ctx.log)
    if current is None:
        started = await services.create_service(aws, cluster, svc, td_arn, data.desired_count,
                                                ctx.task_id, ctx.log)
    else:
        started = await services.update_service(aws, cluster, current, svc, td_arn, data.desired_count,
                                                False, ctx.log)
    verdict: Verdict = await follow(aws, cluster, name, started.deployment_id, ctx.log, deadline,
                                    data.poll_interval_s, event_ids(current))
    if verdict.ok:
        await scaling.register(aws, wanted, ctx.log)
    return outcome(verdict, canaryServiceName=name, serviceArn=started.service.get("serviceArn"),
                   cluster=cluster, taskDefinitionArn=td_arn, taskDefinitionRegistered=registered,
                   deploymentId=started.deployment_id, created=started.created)


async def delete(ctx: TaskContext, data: CanaryDeleteInput) -> TaskOutcome:
    cluster, name = data.infrastructure.cluster, data.canary_service_name
    aws = Aws(data.infrastructure, ctx.proxy)
    current = await describe_service(aws, cluster, name)
    if current is None or current.get("status") != "ACTIVE":
        ctx.log.info(f"canary service {name} is already gone")
        return TaskOutcome.ok(canaryServiceName=name, cluster=cluster, deleted=False)
    deleted = await services.delete_service(aws, cluster, name, ctx.log)
    return TaskOutcome.ok(canaryServiceName=name, cluster=cluster, deleted=deleted)
