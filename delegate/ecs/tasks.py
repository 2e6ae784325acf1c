"""The ECS task types. Importing this module registers them and loads no boto3: each handler imports
its executor module (and with it boto3) when the first such task arrives."""

from __future__ import annotations

import importlib
from typing import Any

from delegate.ecs.inputs import (
    BlueGreenCreateInput,
    BlueGreenPrepareRollbackInput,
    BlueGreenRollbackInput,
    BlueGreenSwapInput,
    CanaryDeleteInput,
    CanaryDeployInput,
    PrepareRollbackInput,
    RollingDeployInput,
    RollingRollbackInput,
    RunTaskInput,
)
from delegate.tasks.registry import TaskContext, TaskOutcome, task_type


async def _run(module: str, function: str, ctx: TaskContext, data: Any) -> TaskOutcome:
    executor = importlib.import_module(f"delegate.ecs.{module}")
    result: TaskOutcome = await getattr(executor, function)(ctx, data)
    return result


@task_type("ECS_ROLLING_DEPLOY", RollingDeployInput)
async def rolling_deploy(ctx: TaskContext, data: RollingDeployInput) -> TaskOutcome:
    return await _run("rolling", "deploy", ctx, data)


@task_type("ECS_PREPARE_ROLLBACK_DATA", PrepareRollbackInput)
async def prepare_rollback_data(ctx: TaskContext, data: PrepareRollbackInput) -> TaskOutcome:
    return await _run("rolling", "prepare_rollback", ctx, data)


@task_type("ECS_ROLLING_ROLLBACK", RollingRollbackInput)
async def rolling_rollback(ctx: TaskContext, data: RollingRollbackInput) -> TaskOutcome:
    return await _run("rolling", "rollback", ctx, data)


@task_type("ECS_CANARY_DEPLOY", CanaryDeployInput)
async def canary_deploy(ctx: TaskContext, data: CanaryDeployInput) -> TaskOutcome:
    return await _run("canary", "deploy", ctx, data)


@task_type("ECS_CANARY_DELETE", CanaryDeleteInput)
async def canary_delete(ctx: TaskContext, data: CanaryDeleteInput) -> TaskOutcome:
    return await _run("canary", "delete", ctx, data)


@task_type("ECS_BLUE_GREEN_CREATE_SERVICE", BlueGreenCreateInput)
async def blue_green_create(ctx: TaskContext, data: BlueGreenCreateInput) -> TaskOutcome:
    return await _run("bluegreen", "create", ctx, data)


@task_type("ECS_BLUE_GREEN_SWAP_TARGET_GROUPS", BlueGreenSwapInput)
async def blue_green_swap(ctx: TaskContext, data: BlueGreenSwapInput) -> TaskOutcome:
    return await _run("bluegreen", "swap", ctx, data)


@task_type("ECS_BLUE_GREEN_ROLLBACK", BlueGreenRollbackInput)
async def blue_green_rollback(ctx: TaskContext, data: BlueGreenRollbackInput) -> TaskOutcome:
    return await _run("bluegreen", "rollback", ctx, data)


@task_type("ECS_BLUE_GREEN_PREPARE_ROLLBACK_DATA", BlueGreenPrepareRollbackInput)
async def blue_green_prepare_rollback(ctx: TaskContext, data: BlueGreenPrepareRollbackInput) -> TaskOutcome:
    return await _run("bgrollback", "prepare", ctx, data)


@task_type("ECS_RUN_TASK", RunTaskInput)
async def run_task(ctx: TaskContext, data: RunTaskInput) -> TaskOutcome:
    return await _run("runtask", "run", ctx, data)
