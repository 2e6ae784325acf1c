"""ECS_RUN_TASK: run a task definition once and report how its containers exited.

RunTask carries a client token derived from the task id, so a re-delivered task finds the task it
already started instead of starting a second one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from delegate.ecs import manifests, services
from delegate.ecs.aws import Aws, client_token
from delegate.ecs.inputs import RunTaskInput
from delegate.ecs.watch import Deadline
from delegate.tasks.registry import TaskContext, TaskOutcome

_NOT_RUN_PARAMS = ("cluster", "taskDefinition", "clientToken")


def _short(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def _exits(task: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": c.get("name"), "exitCode": c.get("exitCode"), "reason": c.get("reason")}
            for c in task.get("containers") or []]


async def run(ctx: TaskContext, data: RunTaskInput) -> TaskOutcome:
    deadline = Deadline.after(ctx.timeout_s)
    cluster = data.infrastructure.cluster
    aws = Aws(data.infrastructure, ctx.proxy)
    if isinstance(data.task_definition, str) and data.task_definition.startswith("arn:"):
        td_arn = data.task_definition
    else:
        td_arn, _ = await services.register_task_definition(
            aws, manifests.task_definition(data.task_definition), ctx.log)
    request = {k: v for k, v in manifests.load(data.run_task_request, "runTaskRequest").items()
               if k not in _NOT_RUN_PARAMS}
    answer = await aws.call("ecs", "run_task", **request, cluster=cluster, taskDefinition=td_arn,
                            clientToken=client_token(ctx.task_id, "run-task", 64))
    failures = answer.get("failures") or []
    arns = [t["taskArn"] for t in answer.get("tasks") or []]
    if failures or not arns:
        why = "; ".join(f"{f.get('arn', '')} {f.get('reason')}: {f.get('detail', '')}" for f in failures)
        return TaskOutcome.failed(f"RunTask started no task: {why or 'no reason given'}",
                                  taskDefinitionArn=td_arn, failures=failures)
    ctx.log.info(f"started {len(arns)} task(s) of {td_arn}: {', '.join(map(_short, arns))}")
    response: dict[str, Any] = {"taskDefinitionArn": td_arn, "taskArns": arns, "cluster": cluster}
    if not data.wait_for_stop:
        return TaskOutcome.ok(**response)
    states: dict[str, str] = {}
    while True:
        tasks = (await aws.call("ecs", "describe_tasks", cluster=cluster, tasks=arns)).get("tasks") or []
        for task in tasks:
            state = str(task.get("lastStatus"))
            if states.get(task["taskArn"]) != state:
                states[task["taskArn"]] = state
                ctx.log.info(f"task {_short(task['taskArn'])}: {state}")
        if tasks and all(t.get("lastStatus") == "STOPPED" for t in tasks):
            break
        if deadline.left() <= 0:
            return TaskOutcome.failed(f"task(s) did not stop within the task's timeout "
                                      f"({', '.join(f'{_short(a)} {s}' for a, s in states.items())})",
                                      **response)
        await asyncio.sleep(min(data.poll_interval_s, max(deadline.left(), 0.0)))
    response["tasks"] = [{"taskArn": t["taskArn"], "stopCode": t.get("stopCode"),
                          "stoppedReason": t.get("stoppedReason"), "containers": _exits(t)} for t in tasks]
    bad = []
    for task in tasks:
        for c in _exits(task):
            ctx.log.info(f"task {_short(task['taskArn'])} container {c['name']} exited "
                         f"{c['exitCode']} ({task.get('stoppedReason')})")
            if c["exitCode"] != 0:
                bad.append(f"{_short(task['taskArn'])}/{c['name']}: exit code {c['exitCode']}"
                           + (f" ({task.get('stoppedReason')})" if c["exitCode"] is None else ""))
    if bad:
        return TaskOutcome.failed("task(s) failed: " + "; ".join(bad), **response)
    return TaskOutcome.ok(**response)
