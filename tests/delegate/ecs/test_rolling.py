"""ECS_ROLLING_DEPLOY / PREPARE_ROLLBACK_DATA / ROLLING_ROLLBACK through the manager, on the local ECS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.delegate.ecs.support import infra, log_text, result, service_definition, task_definition
from tests.devstack.aws.world import EcsWorld

pytestmark = pytest.mark.timeout(90)
Run = Callable[..., dict[str, Any]]


def deploy_data(world: EcsWorld, image: str, **extra: Any) -> dict[str, Any]:
    return {"infrastructure": infra(world), "taskDefinition": task_definition(world, image),
            "serviceDefinition": service_definition(world), "pollIntervalS": 0.3, **extra}


def test_a_new_service_is_created_and_reaches_steady_state(world: EcsWorld, run: Run) -> None:
    task = run("ECS_ROLLING_DEPLOY", deploy_data(world, "app:1"))

    assert task["status"] == "SUCCEEDED", log_text(task)
    out = result(task)
    assert out["created"] is True
    service = world.service()
    assert service["deployments"][0]["id"] == out["deploymentId"]
    assert service["deployments"][0]["rolloutState"] == "COMPLETED"
    assert service["runningCount"] == 2
    assert service["taskDefinition"] == out["taskDefinitionArn"]
    assert "has reached a steady state" in log_text(task)
