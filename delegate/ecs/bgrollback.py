"""ECS_BLUE_GREEN_PREPARE_ROLLBACK_DATA (the swap and rollback that use it: bluegreen.py).

Before a blue/green deploy the pipeline records where production traffic goes and the blue service's
task definition and desiredCount. The swap may scale the old (blue) service down
(`downsizeOldService`, after `downsizeOldServiceDelayS`); a rollback given that `rollbackData` then
scales it back to what it ran, so routing traffic back to it does not route to no tasks.
"""

from __future__ import annotations

from typing import Any

from delegate.ecs import manifests
from delegate.ecs.aws import Aws
from delegate.ecs.bluegreen import _services_by_tag, _tag, routed_to
from delegate.ecs.inputs import BlueGreenPrepareRollbackInput
from delegate.tasks.registry import TaskContext, TaskOutcome


async def prepare(ctx: TaskContext, data: BlueGreenPrepareRollbackInput) -> TaskOutcome:
    svc = manifests.service_definition(data.service_definition)
    cluster, base = data.infrastructure.cluster, svc["serviceName"]
    aws = Aws(data.infrastructure, ctx.proxy)
    lb = data.load_balancer
    blue = next((s for s in await _services_by_tag(aws, cluster, base) if _tag(s) == "BLUE"), None)
    rollback_data: dict[str, Any] = {
        "cluster": cluster, "serviceName": base,
        "prodTargetGroupArn": await routed_to(aws, lb.prod_listener_arn, lb.prod_listener_rule_arn),
        "stageTargetGroupArn": await routed_to(aws, lb.stage_listener_arn, lb.stage_listener_rule_arn),
        "blueServiceName": blue["serviceName"] if blue else None,
        "blueDesiredCount": blue.get("desiredCount") if blue else None,
        "blueTaskDefinitionArn": blue.get("taskDefinition") if blue else None,
    }
    if blue is None:
        ctx.log.info(f"no blue service of {base} yet: a rollback only deletes the green one")
    else:
        ctx.log.info(f"rollback data: blue service {blue['serviceName']} runs {blue.get('desiredCount')} "
                     f"task(s) of {blue.get('taskDefinition')}; production traffic on "
                     f"{rollback_data['prodTargetGroupArn']}")
    return TaskOutcome.ok(rollbackData=rollback_data)
