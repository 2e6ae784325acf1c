"""Harness-style blue/green: rollback data taken first, the old service downsized after a delay on
swap, and a rollback that scales it back before traffic returns to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.delegate.ecs.support import (
    BlueGreenWorld,
    infra,
    log_text,
    result,
    service_definition,
    task_definition,
)

pytestmark = pytest.mark.timeout(120)
Run = Callable[..., dict[str, Any]]


def test_downsized_blue_is_scaled_back_by_a_rollback_with_its_rollback_data(
        bg_world: BlueGreenWorld, run: Run) -> None:
    world = bg_world
    td = world.task_definition(image="app:1")
    world.create_service(td, desired=2, name="web__1", tags=[{"key": "BG_VERSION", "value": "BLUE"}])
    world.wait_completed("web__1")
    lb = world.lb_config()
    base = {"infrastructure": infra(world), "loadBalancer": lb}

    prepared = run("ECS_BLUE_GREEN_PREPARE_ROLLBACK_DATA",
                   {**base, "serviceDefinition": service_definition(world, name="web")})
    assert prepared["status"] == "SUCCEEDED", log_text(prepared)
    data = result(prepared)["rollbackData"]
    blue = (data["blueServiceName"], data["blueDesiredCount"], data["blueTaskDefinitionArn"])
    assert blue == ("web__1", 2, td)
    assert data["prodTargetGroupArn"] == world.target_group

    created = run("ECS_BLUE_GREEN_CREATE_SERVICE", {
        **base, "pollIntervalS": 0.3, "taskDefinition": task_definition(world, "app:2"),
        "serviceDefinition": service_definition(world, name="web")})
    assert created["status"] == "SUCCEEDED", log_text(created)
    out = result(created)
    swap = {**base, "greenServiceName": out["greenServiceName"], "blueServiceName": "web__1",
            "prodTargetGroupArn": out["prodTargetGroupArn"],
            "stageTargetGroupArn": out["stageTargetGroupArn"]}

    swapped = run("ECS_BLUE_GREEN_SWAP_TARGET_GROUPS",
                  {**swap, "downsizeOldService": True, "downsizeOldServiceDelayS": 1.5})

    assert swapped["status"] == "SUCCEEDED", log_text(swapped)
    text = log_text(swapped)
    assert text.index("production traffic now goes to") < text.index("waiting 1.5 s before scaling") \
        < text.index("old service web__1 scaled to 0")
    assert world.service("web__1")["desiredCount"] == 0

    rolled = run("ECS_BLUE_GREEN_ROLLBACK", {**swap, "rollbackData": data})

    assert rolled["status"] == "SUCCEEDED", log_text(rolled)
    assert result(rolled)["blueScaledBack"] is True
    assert world.service("web__1")["desiredCount"] == 2
    assert world.forwards_to(world.prod_listener) == world.target_group
