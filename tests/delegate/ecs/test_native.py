"""ECS_ROLLING_DEPLOY with ECS's own strategies (BLUE_GREEN, LINEAR, CANARY), judged by the service
deployment it started, through the manager on the local ECS."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from devstack.aws.server import LocalAws
from tests.delegate.ecs.support import infra, log_text, result, service_definition, task_definition
from tests.devstack.aws.native_world import NativeWorld
from tests.devstack.aws.world import EcsWorld, wait_for
from tests.support import Manager

pytestmark = pytest.mark.timeout(120)
Run = Callable[..., dict[str, Any]]


@pytest.fixture
def native_world(ecs_aws: LocalAws) -> NativeWorld:
    return NativeWorld(ecs_aws, f"n{uuid.uuid4().hex[:10]}")


def native_data(w: NativeWorld, image: str, strategy: str, **config: Any) -> dict[str, Any]:
    svc = service_definition(w, loadBalancers=w.load_balancers(),
                             deploymentConfiguration=w.deployment_configuration(strategy, **config))
    return {"infrastructure": infra(w), "taskDefinition": task_definition(w, image),
            "serviceDefinition": svc, "pollIntervalS": 0.2}


def newest_arn(w: NativeWorld) -> str:
    return str(w.service_deployments()[0]["serviceDeploymentArn"])


def test_a_rolling_deploy_records_its_service_deployment(world: EcsWorld, run: Run) -> None:
    data = {"infrastructure": infra(world), "taskDefinition": task_definition(world, "app:1"),
            "serviceDefinition": service_definition(world), "pollIntervalS": 0.3}
    task = run("ECS_ROLLING_DEPLOY", data)
    assert task["status"] == "SUCCEEDED", log_text(task)
    out = result(task)
    listed = world.ecs.list_service_deployments(cluster=world.cluster, service="web")["serviceDeployments"]
    assert out["serviceDeploymentArn"] == listed[0]["serviceDeploymentArn"]
    assert out["strategy"] == "ROLLING"


@pytest.mark.parametrize(("strategy", "config", "shifts"), [
    ("BLUE_GREEN", {}, ["100"]),
    ("LINEAR", {"linearConfiguration": {"stepPercent": 50.0, "stepBakeTimeInMinutes": 1}}, ["50", "100"]),
    ("CANARY", {"canaryConfiguration": {"canaryPercent": 20.0, "canaryBakeTimeInMinutes": 1}}, ["20", "100"]),
])
def test_each_strategy_deploys_and_is_judged_by_its_service_deployment(
        native_world: NativeWorld, run: Run, ecs_aws: LocalAws, strategy: str, config: dict[str, Any],
        shifts: list[str]) -> None:
    w = native_world
    config = {**config, "bake": math.ceil(1.0 / ecs_aws.timing.minute_s)}  # about a second of bake time
    first = run("ECS_ROLLING_DEPLOY", native_data(w, "app:1", strategy, **config))
    assert first["status"] == "SUCCEEDED", log_text(first)

    task = run("ECS_ROLLING_DEPLOY", native_data(w, "app:2", strategy, **config))

    assert task["status"] == "SUCCEEDED", log_text(task)
    out = result(task)
    arn = newest_arn(w)
    assert out["serviceDeploymentArn"] == arn != result(first)["serviceDeploymentArn"]
    assert (out["strategy"], out["serviceDeploymentStatus"]) == (strategy, "SUCCESSFUL")
    assert out["finishedAt"]
    text = log_text(task)
    assert f"following service deployment {arn}" in text
    said = [s for s in ("20", "50", "100") if f"shifted {s}% of production traffic" in text]
    assert said == shifts, text
    assert "traffic to the new revision: production 100%" in text
    assert "stage BAKE_TIME" in text, text
    assert w.green_weight() == 100
    assert w.service()["taskDefinition"] == out["taskDefinitionArn"]


def start(manager: Manager, data: dict[str, Any], timeout_s: float = 60.0) -> str:
    return manager.submit("ECS_ROLLING_DEPLOY", data, timeoutMs=int(timeout_s * 1000))


def finished(manager: Manager, task_id: str) -> dict[str, Any]:
    manager.wait_task(task_id, timeout=60)
    wait_for(lambda: manager.task(task_id).get("logLines"), "task log lines", 5)
    return manager.task(task_id)


def test_an_alarm_in_the_bake_fails_the_deploy_with_the_rollback(
        native_world: NativeWorld, run: Run, ecs_manager: Manager) -> None:
    w = native_world
    assert run("ECS_ROLLING_DEPLOY", native_data(w, "app:1", "LINEAR"))["status"] == "SUCCEEDED"
    config = {"bake": 100, "linearConfiguration": {"stepPercent": 50.0, "stepBakeTimeInMinutes": 0}}
    task_id = start(ecs_manager, native_data(w, "app:2", "LINEAR", **config))
    wait_for(lambda: len(w.service_deployments()) == 2 and w.newest().get("lifecycleStage") == "BAKE_TIME",
             "the bake time", 40)
    w.set_alarm("ALARM")
    try:
        task = finished(ecs_manager, task_id)
    finally:
        w.set_alarm("OK")

    assert task["status"] == "FAILED", log_text(task)
    out = result(task)
    assert out["serviceDeploymentStatus"] == "ROLLBACK_SUCCESSFUL"
    assert out["triggeredAlarms"] == [w.alarm]
    assert w.alarm in task["errorMessage"]
    assert f"alarm {w.alarm} triggered" in log_text(task)
    assert w.green_weight() == 0


def test_a_hook_that_times_out_fails_the_deploy(native_world: NativeWorld, run: Run) -> None:
    w = native_world
    hooks = [{"targetType": "PAUSE", "lifecycleStages": ["PRE_PRODUCTION_TRAFFIC_SHIFT"],
              "timeoutConfiguration": {"timeoutInMinutes": 1, "action": "ROLLBACK"}}]
    assert run("ECS_ROLLING_DEPLOY", native_data(w, "app:1", "CANARY", lifecycleHooks=hooks))["status"] \
        == "SUCCEEDED"
    task = run("ECS_ROLLING_DEPLOY", native_data(w, "app:2", "CANARY", lifecycleHooks=hooks))

    assert task["status"] == "FAILED", log_text(task)
    assert result(task)["serviceDeploymentStatus"] == "ROLLBACK_SUCCESSFUL"
    assert "timed out" in task["errorMessage"]
    assert "(PAUSE): TIMED_OUT" in log_text(task)
    assert w.green_weight() == 0


def test_aborting_the_task_rolls_the_service_deployment_back(
        native_world: NativeWorld, run: Run, ecs_manager: Manager) -> None:
    w = native_world
    assert run("ECS_ROLLING_DEPLOY", native_data(w, "app:1", "BLUE_GREEN"))["status"] == "SUCCEEDED"
    task_id = start(ecs_manager, native_data(w, "app:2", "BLUE_GREEN", bake=100))
    wait_for(lambda: len(w.service_deployments()) == 2 and w.newest().get("lifecycleStage") == "BAKE_TIME",
             "the bake time", 40)
    arn = newest_arn(w)

    ecs_manager.api("POST", f"/api/setup/tasks/{task_id}/abort")

    w.wait_status(arn, ("ROLLBACK_SUCCESSFUL",))
    assert "StopServiceDeployment" in w.describe(arn)["statusReason"]
    task = finished(ecs_manager, task_id)
    assert task["status"] == "ABORTED"
    assert "stopped with rollback" in log_text(task)
    assert w.green_weight() == 0


def test_health_check_failures_trip_the_breaker_of_a_blue_green_deploy(
        native_world: NativeWorld, run: Run) -> None:
    w = native_world
    first = run("ECS_ROLLING_DEPLOY", native_data(w, "app:1", "BLUE_GREEN", breaker=True))
    assert first["status"] == "SUCCEEDED"
    data = native_data(w, "app:2", "BLUE_GREEN", breaker=True, bake=10)
    data["taskDefinition"] = task_definition(w, "app:2", DEVSTACK_UNHEALTHY_AFTER="0.2")
    data["taskDefinition"]["containerDefinitions"][0]["healthCheck"] = {"command": ["CMD", "/bin/check"]}

    task = run("ECS_ROLLING_DEPLOY", data)

    assert task["status"] == "FAILED", log_text(task)
    assert result(task)["serviceDeploymentStatus"] == "ROLLBACK_SUCCESSFUL"
    assert "circuit breaker" in task["errorMessage"]
    assert "failed container health checks" in log_text(task)
    assert w.green_weight() == 0


def test_a_rolling_deploy_without_the_service_deployments_api_still_deploys(
        world: EcsWorld, run: Run, ecs_aws: LocalAws) -> None:
    ecs_aws.faults.add("ListServiceDeployments", "AccessDeniedException", times=None,
                       message="not authorized to perform ecs:ListServiceDeployments")
    data = {"infrastructure": infra(world), "taskDefinition": task_definition(world, "app:1"),
            "serviceDefinition": service_definition(world), "pollIntervalS": 0.3}
    task = run("ECS_ROLLING_DEPLOY", data)
    assert task["status"] == "SUCCEEDED", log_text(task)
    assert result(task)["serviceDeploymentArn"] is None
    assert "service deployment not recorded (AWS ecs.list_service_deployments failed: AccessDeniedException" \
        in log_text(task)
