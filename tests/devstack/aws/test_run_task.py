"""RunTask tasks run, then stop with an exit code; clientToken makes RunTask idempotent."""

from __future__ import annotations

from typing import Any

import pytest

from tests.devstack.aws.world import EcsWorld

pytestmark = pytest.mark.timeout(60)


def run_and_wait(world: EcsWorld, td: str, **extra: Any) -> dict[str, Any]:
    task = world.run_task(td, **extra)
    assert task["lastStatus"] == "PROVISIONING"
    assert task["desiredStatus"] == "RUNNING"
    world.wait_task(task["taskArn"], "tasks_running")
    return world.wait_task(task["taskArn"])


def test_a_task_exits_with_the_marked_code(ecs_world: EcsWorld) -> None:
    stopped = run_and_wait(ecs_world, ecs_world.task_definition(DEVSTACK_EXIT_CODE="3"))
    assert stopped["lastStatus"] == "STOPPED"
    assert stopped["stopCode"] == "EssentialContainerExited"
    assert stopped["stoppedReason"] == "Essential container in task exited"
    assert stopped["containers"][0]["exitCode"] == 3
    assert stopped["startedAt"] <= stopped["stoppedAt"]


def test_a_task_without_markers_exits_zero(ecs_world: EcsWorld) -> None:
    stopped = run_and_wait(ecs_world, ecs_world.task_definition())
    assert stopped["containers"][0]["exitCode"] == 0


def test_container_overrides_can_carry_the_marker(ecs_world: EcsWorld) -> None:
    overrides = {
        "containerOverrides": [
            {"name": "app", "environment": [{"name": "DEVSTACK_EXIT_CODE", "value": "42"}]}
        ]
    }
    stopped = run_and_wait(ecs_world, ecs_world.task_definition(), overrides=overrides)
    assert stopped["containers"][0]["exitCode"] == 42


def test_a_task_that_never_starts_has_no_exit_code(ecs_world: EcsWorld) -> None:
    td = ecs_world.task_definition(DEVSTACK_FAIL="start")
    stopped = ecs_world.wait_task(ecs_world.run_task(td)["taskArn"])
    assert stopped["stopCode"] == "TaskFailedToStart"
    assert "exitCode" not in stopped["containers"][0]
    assert "startedAt" not in stopped


def test_run_task_with_the_same_client_token_starts_one_task(ecs_world: EcsWorld) -> None:
    td = ecs_world.task_definition(DEVSTACK_RUN_SECONDS="30")
    kwargs: dict[str, Any] = {
        "cluster": ecs_world.cluster,
        "taskDefinition": td,
        "launchType": "FARGATE",
        "networkConfiguration": ecs_world.network,
        "clientToken": "run-1",
    }
    first = ecs_world.ecs.run_task(**kwargs)["tasks"]
    again = ecs_world.ecs.run_task(**kwargs)["tasks"]
    assert [t["taskArn"] for t in again] == [t["taskArn"] for t in first]
    running = ecs_world.ecs.list_tasks(cluster=ecs_world.cluster, family=ecs_world.name)["taskArns"]
    assert running == [first[0]["taskArn"]]
    ecs_world.ecs.stop_task(cluster=ecs_world.cluster, task=first[0]["taskArn"], reason="done")
    stopped = ecs_world.ecs.describe_tasks(cluster=ecs_world.cluster, tasks=[first[0]["taskArn"]])["tasks"][0]
    assert (stopped["lastStatus"], stopped["stoppedReason"]) == ("STOPPED", "done")
