"""Canary, blue/green and run task through the manager, on the local ECS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.delegate.ecs.support import (
    BlueGreenWorld,
    infra,
    log_text,
    result,
    service_definition,
    task_definition,
)
from tests.devstack.aws.world import EcsWorld

pytestmark = pytest.mark.timeout(90)
Run = Callable[..., dict[str, Any]]


def test_canary_deploy_then_delete(world: EcsWorld, run: Run) -> None:
    td1 = world.task_definition(image="app:1")
    world.create_service(td1, desired=3)
    data = {"infrastructure": infra(world), "pollIntervalS": 0.3,
            # manifests as YAML text, as a pipeline would send them
            "taskDefinition": yaml.safe_dump(task_definition(world, "app:canary")),
            "serviceDefinition": yaml.safe_dump(service_definition(world)),
            "desiredCountOverride": 1}

    deployed = run("ECS_CANARY_DEPLOY", data)

    assert deployed["status"] == "SUCCEEDED", log_text(deployed)
    name = result(deployed)["canaryServiceName"]
    assert name == "webCanary"
    canary = world.service(name)
    assert (canary["desiredCount"], canary["runningCount"]) == (1, 1)
    assert canary["taskDefinition"] == result(deployed)["taskDefinitionArn"] != td1
    assert world.service("web")["taskDefinition"] == td1

    deleted = run("ECS_CANARY_DELETE", {"infrastructure": infra(world), "canaryServiceName": name})
    assert deleted["status"] == "SUCCEEDED", log_text(deleted)
    assert result(deleted)["deleted"] is True
    assert world.service(name)["status"] in ("DRAINING", "INACTIVE")
    again = run("ECS_CANARY_DELETE", {"infrastructure": infra(world), "canaryServiceName": name})
    assert again["status"] == "SUCCEEDED"
    assert result(again)["deleted"] is False


def blue_service(world: BlueGreenWorld) -> str:
    td = world.task_definition(image="app:1")
    world.create_service(td, desired=2, name="web__1", tags=[{"key": "BG_VERSION", "value": "BLUE"}])
    world.wait_completed("web__1")
    return td


def test_blue_green_create_swap_and_rollback(bg_world: BlueGreenWorld, run: Run) -> None:
    world = bg_world
    blue_service(world)
    lb = world.lb_config()
    created = run("ECS_BLUE_GREEN_CREATE_SERVICE", {
        "infrastructure": infra(world), "pollIntervalS": 0.3, "loadBalancer": lb,
        "taskDefinition": task_definition(world, "app:2"),
        "serviceDefinition": service_definition(world, name="web", desired=5)})

    assert created["status"] == "SUCCEEDED", log_text(created)
    out = result(created)
    green = out["greenServiceName"]
    assert (green, out["blueServiceName"]) == ("web__2", "web__1")
    assert (out["prodTargetGroupArn"], out["stageTargetGroupArn"]) == (world.target_group, world.stage_group)
    assert world.tags(green)["BG_VERSION"] == "GREEN"
    service = world.service(green)
    assert service["desiredCount"] == 2, "same as the blue service runs"
    assert service["loadBalancers"][0]["targetGroupArn"] == world.stage_group
    assert world.forwards_to(world.prod_listener) == world.target_group

    swap = {"infrastructure": infra(world), "loadBalancer": lb, "greenServiceName": green,
            "blueServiceName": "web__1", "prodTargetGroupArn": world.target_group,
            "stageTargetGroupArn": world.stage_group}
    swapped = run("ECS_BLUE_GREEN_SWAP_TARGET_GROUPS", swap)

    assert swapped["status"] == "SUCCEEDED", log_text(swapped)
    assert result(swapped)["swapped"] is True
    assert world.forwards_to(world.prod_listener) == world.stage_group
    assert world.forwards_to(world.stage_listener) == world.target_group
    assert (world.tags(green)["BG_VERSION"], world.tags("web__1")["BG_VERSION"]) == ("BLUE", "GREEN")
    again = run("ECS_BLUE_GREEN_SWAP_TARGET_GROUPS", swap)
    assert result(again)["swapped"] is False, "a repeated swap changes nothing"
    assert world.forwards_to(world.prod_listener) == world.stage_group

    rolled = run("ECS_BLUE_GREEN_ROLLBACK", {k: v for k, v in swap.items()})

    assert rolled["status"] == "SUCCEEDED", log_text(rolled)
    assert result(rolled)["greenServiceDeleted"] is True
    assert world.forwards_to(world.prod_listener) == world.target_group
    assert world.forwards_to(world.stage_listener) == world.stage_group
    assert world.tags("web__1")["BG_VERSION"] == "BLUE"
    assert world.service(green)["status"] in ("DRAINING", "INACTIVE")


def test_run_task_exit_zero_succeeds(world: EcsWorld, run: Run) -> None:
    task = run("ECS_RUN_TASK", {
        "infrastructure": infra(world), "pollIntervalS": 0.3,
        "taskDefinition": task_definition(world, "job:1", DEVSTACK_RUN_SECONDS="0.3"),
        "runTaskRequest": {"launchType": "FARGATE", "networkConfiguration": world.network}})
    assert task["status"] == "SUCCEEDED", log_text(task)
    tasks = result(task)["tasks"]
    assert len(tasks) == 1
    assert tasks[0]["containers"][0]["exitCode"] == 0
    assert "exited 0" in log_text(task)


def test_run_task_non_zero_exit_fails(world: EcsWorld, run: Run) -> None:
    task = run("ECS_RUN_TASK", {
        "infrastructure": infra(world), "pollIntervalS": 0.3,
        "taskDefinition": task_definition(world, "job:1"),
        "runTaskRequest": {
            "launchType": "FARGATE", "networkConfiguration": world.network,
            "overrides": {"containerOverrides": [{"name": "app", "environment": [
                {"name": "DEVSTACK_EXIT_CODE", "value": "3"}]}]}}})
    assert task["status"] == "FAILED", log_text(task)
    assert "exit code 3" in task["errorMessage"]
    assert result(task)["tasks"][0]["containers"][0]["exitCode"] == 3
