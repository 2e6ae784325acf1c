"""Fail fast without a circuit breaker, and a crash loop after completion is not a success."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.delegate.ecs.support import infra, log_text, result, service_definition, task_definition
from tests.devstack.aws.world import EcsWorld

pytestmark = pytest.mark.timeout(120)
Run = Callable[..., dict[str, Any]]


def data(world: EcsWorld, desired: int = 2, **env: str) -> dict[str, Any]:
    return {"infrastructure": infra(world), "pollIntervalS": 0.3,
            "taskDefinition": task_definition(world, "app:x", **env),
            "serviceDefinition": service_definition(world, desired=desired, breaker=False)}


def existing(world: EcsWorld, desired: int = 2) -> None:
    world.create_service(world.task_definition(image="app:1"), desired=desired)
    world.wait_completed()


def test_tasks_that_never_start_fail_the_deploy_at_ecs_unstable_event(world: EcsWorld, run: Run) -> None:
    existing(world)
    task = run("ECS_ROLLING_DEPLOY", data(world, DEVSTACK_FAIL="start"), timeout_s=90)

    assert task["status"] == "FAILED", log_text(task)
    message = task["errorMessage"]
    assert "failed fast" in message and "unable to consistently start tasks" in message
    assert "CannotStartContainerError: devstack marker DEVSTACK_FAIL=start" in message


def test_the_failed_tasks_limit_ends_the_deploy(world: EcsWorld, run: Run) -> None:
    existing(world, desired=8)
    task = run("ECS_ROLLING_DEPLOY", {**data(world, desired=8, DEVSTACK_FAIL="start"),
                                      "failedTasksLimit": 2}, timeout_s=90)

    assert task["status"] == "FAILED", log_text(task)
    assert "(failedTasksLimit 2;" in task["errorMessage"]
    assert "CannotStartContainerError" in task["errorMessage"]


def test_tasks_that_crash_after_completion_fail_the_deploy(world: EcsWorld, run: Run) -> None:
    existing(world)
    crashing = {"DEVSTACK_FAIL": "exit", "DEVSTACK_RUN_SECONDS": "2.5"}
    unwatched = run("ECS_ROLLING_DEPLOY", {**data(world, **crashing), "verifyAfterCompletionS": 0})
    assert unwatched["status"] == "SUCCEEDED", "without the window the crash loop looks like a success"

    crashing["DEVSTACK_RUN_SECONDS"] = "2.6"  # a new revision
    task = run("ECS_ROLLING_DEPLOY", {**data(world, **crashing), "verifyAfterCompletionS": 10})

    assert task["status"] == "FAILED", log_text(task)
    message = task["errorMessage"]
    assert "completed, then" in message and "tasks stopped within 10 s" in message
    assert "EssentialContainerExited" in message and "exit code 1" in message
    assert "watching deployment" in log_text(task)
    assert result(task)["deploymentId"]
