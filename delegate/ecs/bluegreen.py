"""ECS_BLUE_GREEN_CREATE_SERVICE, ECS_BLUE_GREEN_SWAP_TARGET_GROUPS, ECS_BLUE_GREEN_ROLLBACK.

The BLUE service takes production traffic through the prod listener (or rule); a new GREEN service
(`<serviceName>__<revision>`) starts on the stage listener's target group. Swapping points the prod
listener at green's target group and the stage listener at blue's, and swaps the `BG_VERSION` tags.
Each listener change is compared before it is made, so a re-delivered swap or rollback is a no-op.
"""

from __future__ import annotations

import asyncio
from typing import Any

from delegate.ecs import manifests, scaling, services
from delegate.ecs.aws import Aws
from delegate.ecs.inputs import (
    BlueGreenCreateInput,
    BlueGreenRollbackInput,
    BlueGreenSwapInput,
    LoadBalancerConfig,
)
from delegate.ecs.rolling import outcome
from delegate.ecs.watch import Deadline, describe_service, event_ids, follow
from delegate.errors import TaskError
from delegate.tasks.registry import TaskContext, TaskLog, TaskOutcome

TAG = "BG_VERSION"


def _forward_target(actions: list[dict[str, Any]], what: str) -> str:
    for action in actions:
        if action.get("Type") == "forward":
            if action.get("TargetGroupArn"):
                return str(action["TargetGroupArn"])
            groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or []
            if groups:
                return str(groups[0]["TargetGroupArn"])
    raise TaskError(f"{what} does not forward to a target group; blue/green needs a forward action")


async def routed_to(aws: Aws, listener_arn: str, rule_arn: str | None) -> str:
    """The target group a listener's default action (or one of its rules) forwards to."""
    if rule_arn:
        rules = (await aws.call("elbv2", "describe_rules", RuleArns=[rule_arn]))["Rules"]
        return _forward_target(rules[0].get("Actions") or [], f"listener rule {rule_arn}")
    listeners = (await aws.call("elbv2", "describe_listeners", ListenerArns=[listener_arn]))["Listeners"]
    return _forward_target(listeners[0].get("DefaultActions") or [], f"listener {listener_arn}")


async def route(aws: Aws, listener_arn: str, rule_arn: str | None, target_group: str,
                log: TaskLog) -> bool:
    """Point a listener (or rule) at `target_group`; False when it already was."""
    if await routed_to(aws, listener_arn, rule_arn) == target_group:
        return False
    actions = [{"Type": "forward", "TargetGroupArn": target_group}]
    if rule_arn:
        await aws.call("elbv2", "modify_rule", RuleArn=rule_arn, Actions=actions)
    else:
        await aws.call("elbv2", "modify_listener", ListenerArn=listener_arn, DefaultActions=actions)
    log.info(f"{'rule ' + rule_arn if rule_arn else 'listener ' + listener_arn} now forwards to "
             f"{target_group}")
    return True


async def _services_by_tag(aws: Aws, cluster: str, prefix: str) -> list[dict[str, Any]]:
    arns: list[str] = []
    token: str | None = None
    while True:
        page = await aws.call("ecs", "list_services", cluster=cluster,
                              **({"nextToken": token} if token else {}))
        arns += [a for a in page.get("serviceArns") or [] if a.rsplit("/", 1)[-1].startswith(prefix)]
        token = page.get("nextToken")
        if not token:
            break
    found: list[dict[str, Any]] = []
    for i in range(0, len(arns), 10):
        answer = await aws.call("ecs", "describe_services", cluster=cluster, services=arns[i:i + 10],
                                include=["TAGS"])
        found += [s for s in answer.get("services") or [] if s.get("status") == "ACTIVE"]
    return found


def _tag(service: dict[str, Any]) -> str | None:
    for tag in service.get("tags") or []:
        if tag.get("key") == TAG:
            return str(tag.get("value"))
    return None


async def _set_tag(aws: Aws, service: dict[str, Any], value: str) -> None:
    if _tag(service) != value:
        await aws.call("ecs", "tag_resource", resourceArn=service["serviceArn"],
                       tags=[{"key": TAG, "value": value}])


async def create(ctx: TaskContext, data: BlueGreenCreateInput) -> TaskOutcome:
    deadline = Deadline.after(ctx.timeout_s)
    td = manifests.task_definition(data.task_definition)
    svc = manifests.service_definition(data.service_definition)
    if not svc.get("loadBalancers"):
        raise TaskError("serviceDefinition.loadBalancers: blue/green needs the container and port "
                        "to register in the target groups")
    cluster, base = data.infrastructure.cluster, svc["serviceName"]
    aws = Aws(data.infrastructure, ctx.proxy)
    lb = data.load_balancer
    prod_tg = await routed_to(aws, lb.prod_listener_arn, lb.prod_listener_rule_arn)
    stage_tg = await routed_to(aws, lb.stage_listener_arn, lb.stage_listener_rule_arn)
    if prod_tg == stage_tg:
        raise TaskError(f"prod and stage listeners both forward to {prod_tg}; they need two target groups")
    td_arn, registered = await services.register_task_definition(aws, td, ctx.log)
    green_name = f"{base}__{td_arn.rsplit(':', 1)[-1]}"
    blue: dict[str, Any] | None = None
    for service in await _services_by_tag(aws, cluster, base):
        name, tag = service["serviceName"], _tag(service)
        if tag == "BLUE" and name != green_name:
            blue = service
        elif tag == "GREEN" and name != green_name:
            ctx.log.info(f"deleting stale green service {name}")
            await services.delete_service(aws, cluster, name, ctx.log)
    desired = int(svc.get("desiredCount", 1))
    if data.same_as_already_running and blue is not None:
        desired = int(blue.get("desiredCount") or desired)
    svc["serviceName"] = green_name
    svc["loadBalancers"] = [{**entry, "targetGroupArn": stage_tg} for entry in svc["loadBalancers"]]
    ctx.log.info(f"blue/green: green service {green_name} on stage target group {stage_tg}; "
                 f"blue is {blue['serviceName'] if blue else 'none yet'} on {prod_tg}")
    current = await services.wait_not_draining(aws, cluster, green_name, deadline, ctx.log)
    if current is None:
        started = await services.create_service(aws, cluster, svc, td_arn, desired, ctx.task_id, ctx.log,
                                                tags=[{"key": TAG, "value": "GREEN"}])
    else:
        started = await services.update_service(aws, cluster, current, svc, td_arn, desired, False,
                                                ctx.log)
    verdict = await follow(aws, cluster, green_name, started.deployment_id, ctx.log, deadline,
                           data.poll_interval_s, event_ids(current))
    if verdict.ok:
        await scaling.register(aws, scaling.Scaling.from_manifests(
            manifests.load_list(data.scalable_targets, "scalableTargets"),
            manifests.load_list(data.scaling_policies, "scalingPolicies"), cluster, green_name), ctx.log)
    return outcome(verdict, greenServiceName=green_name,
                   blueServiceName=blue["serviceName"] if blue else None,
                   prodTargetGroupArn=prod_tg, stageTargetGroupArn=stage_tg, cluster=cluster,
                   taskDefinitionArn=td_arn, taskDefinitionRegistered=registered,
                   serviceArn=started.service.get("serviceArn"))


async def _route_both(aws: Aws, lb: LoadBalancerConfig, prod_to: str, stage_to: str, log: TaskLog) -> bool:
    changed = await route(aws, lb.prod_listener_arn, lb.prod_listener_rule_arn, prod_to, log)
    changed |= await route(aws, lb.stage_listener_arn, lb.stage_listener_rule_arn, stage_to, log)
    return changed


async def swap(ctx: TaskContext, data: BlueGreenSwapInput) -> TaskOutcome:
    cluster = data.infrastructure.cluster
    aws = Aws(data.infrastructure, ctx.proxy)
    green = await describe_service(aws, cluster, data.green_service_name)
    if green is None:
        return TaskOutcome.failed(f"green service {data.green_service_name} does not exist in "
                                  f"cluster {cluster}; run ECS_BLUE_GREEN_CREATE_SERVICE first")
    blue = await describe_service(aws, cluster, data.blue_service_name) if data.blue_service_name else None
    changed = await _route_both(aws, data.load_balancer, data.stage_target_group_arn,
                                data.prod_target_group_arn, ctx.log)
    if not changed:
        ctx.log.info("listeners already swapped; nothing to change")
    await _set_tag(aws, green, "BLUE")
    if blue is not None:
        await _set_tag(aws, blue, "GREEN")
    ctx.log.info(f"production traffic now goes to {data.green_service_name}")
    if blue is not None and data.downsize_old_service:
        await downsize(aws, cluster, blue, data.downsize_delay_s, Deadline.after(ctx.timeout_s), ctx.log)
    return TaskOutcome.ok(swapped=changed, blueServiceName=data.green_service_name,
                          greenServiceName=data.blue_service_name,
                          prodTargetGroupArn=data.stage_target_group_arn,
                          stageTargetGroupArn=data.prod_target_group_arn, cluster=cluster)


async def rollback(ctx: TaskContext, data: BlueGreenRollbackInput) -> TaskOutcome:
    cluster = data.infrastructure.cluster
    aws = Aws(data.infrastructure, ctx.proxy)
    changed = await _route_both(aws, data.load_balancer, data.prod_target_group_arn,
                                data.stage_target_group_arn, ctx.log)
    ctx.log.info("listeners routed back to the blue service" if changed
                 else "listeners already route production to the blue service")
    if data.blue_service_name:
        blue = await describe_service(aws, cluster, data.blue_service_name)
        if blue is not None:
            await _set_tag(aws, blue, "BLUE")
    restored = await restore_blue(aws, cluster, data.rollback_data or {}, ctx.log)
    deleted = await services.delete_service(aws, cluster, data.green_service_name, ctx.log)
    return TaskOutcome.ok(listenersRestored=changed, greenServiceDeleted=deleted, blueScaledBack=restored,
                          blueServiceName=data.blue_service_name,
                          prodTargetGroupArn=data.prod_target_group_arn, cluster=cluster)


async def downsize(aws: Aws, cluster: str, service: dict[str, Any], delay_s: float, deadline: Deadline,
                   log: TaskLog) -> bool:
    """Scale the old service to 0 after `delay_s` (cut short by the task's deadline)."""
    if not service.get("desiredCount"):
        return False
    name = service["serviceName"]
    wait = min(delay_s, max(deadline.left() - 5.0, 0.0))
    if wait > 0:
        log.info(f"waiting {wait:g} s before scaling the old service {name} down")
        await asyncio.sleep(wait)
    await aws.call("ecs", "update_service", cluster=cluster, service=name, desiredCount=0)
    log.change(f"old service {name} scaled to 0 (it ran {service.get('desiredCount')} task(s))")
    return True


async def restore_blue(aws: Aws, cluster: str, rollback_data: dict[str, Any], log: TaskLog) -> bool:
    """Scale the blue service back to what it ran when the rollback data was taken."""
    name, count = rollback_data.get("blueServiceName"), rollback_data.get("blueDesiredCount")
    if not isinstance(name, str) or not isinstance(count, int):
        return False
    current = await describe_service(aws, cluster, name)
    if current is None or current.get("desiredCount") == count:
        return False
    await aws.call("ecs", "update_service", cluster=cluster, service=name, desiredCount=count)
    log.change(f"blue service {name} scaled back to {count} task(s)")
    return True
