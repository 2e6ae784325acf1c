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


def register_scaling(world: EcsWorld, name: str = "web") -> Any:
    import boto3

    scaling = boto3.client("application-autoscaling", **world.aws.client_kwargs())
    rid = f"service/{world.cluster}/{name}"
    scaling.register_scalable_target(ServiceNamespace="ecs", ResourceId=rid,
                                     ScalableDimension="ecs:service:DesiredCount",
                                     MinCapacity=1, MaxCapacity=6)
    scaling.put_scaling_policy(
        PolicyName="cpu", ServiceNamespace="ecs", ResourceId=rid,
        ScalableDimension="ecs:service:DesiredCount", PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 50.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
        })
    return scaling, rid


def scaling_state(scaling: Any, rid: str) -> tuple[list[tuple[int, int]], list[str]]:
    targets = scaling.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[rid])["ScalableTargets"]
    policies = scaling.describe_scaling_policies(ServiceNamespace="ecs", ResourceId=rid)["ScalingPolicies"]
    return [(t["MinCapacity"], t["MaxCapacity"]) for t in targets], [p["PolicyName"] for p in policies]


def suspended(scaling: Any, rid: str) -> list[bool]:
    """Per scalable target: is any of its scaling suspended?"""
    targets = scaling.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[rid])["ScalableTargets"]
    return [any((t.get("SuspendedState") or {}).values()) for t in targets]


def policy_arns(scaling: Any, rid: str) -> list[str]:
    policies = scaling.describe_scaling_policies(ServiceNamespace="ecs", ResourceId=rid)["ScalingPolicies"]
    return [p["PolicyARN"] for p in policies]


def existing_service(world: EcsWorld, desired: int = 2) -> str:
    td1 = world.task_definition(image="app:1")
    world.create_service(td1, desired=desired, breaker=True, rollback=True)
    world.wait_completed()
    return td1


def test_a_new_image_rolls_out_keeping_the_running_count_and_the_scaling(world: EcsWorld, run: Run) -> None:
    existing_service(world, desired=2)
    scaling, rid = register_scaling(world)
    arns = policy_arns(scaling, rid)
    data = deploy_data(world, "app:2")
    data["serviceDefinition"]["desiredCount"] = 5  # ignored: same as already running

    task = run("ECS_ROLLING_DEPLOY", data)

    assert task["status"] == "SUCCEEDED", log_text(task)
    out = result(task)
    assert (out["created"], out["updated"], out["taskDefinitionRegistered"]) == (False, True, True)
    service = world.service()
    assert service["desiredCount"] == 2
    assert [d["id"] for d in service["deployments"]] == [out["deploymentId"]]
    assert {t["taskDefinitionArn"] for t in world.running_tasks()} == {out["taskDefinitionArn"]}
    assert world.ecs.describe_task_definition(taskDefinition=out["taskDefinitionArn"])[
        "taskDefinition"]["containerDefinitions"][0]["image"] == "app:2"
    log = log_text(task)
    assert "auto scaling suspended for the deploy" in log
    assert "auto scaling resumed" in log
    assert "keeping desiredCount 2" in log
    assert scaling_state(scaling, rid) == ([(1, 6)], ["cpu"])
    assert suspended(scaling, rid) == [False]
    assert policy_arns(scaling, rid) == arns, "suspended, not deregistered: the policy is the same one"


def test_tasks_that_fail_to_start_trip_the_breaker_and_the_task_fails(world: EcsWorld, run: Run) -> None:
    td1 = existing_service(world)
    scaling, rid = register_scaling(world)
    data = deploy_data(world, "app:broken")
    data["taskDefinition"]["containerDefinitions"][0]["environment"] = [
        {"name": "DEVSTACK_FAIL", "value": "start"}]

    task = run("ECS_ROLLING_DEPLOY", data)

    assert task["status"] == "FAILED", log_text(task)
    assert "circuit breaker" in task["errorMessage"]
    assert "CannotStartContainerError" in task["errorMessage"]
    log = log_text(task)
    assert "TaskFailedToStart: CannotStartContainerError: devstack marker DEVSTACK_FAIL=start" in log
    assert "rolling back" in log
    assert scaling_state(scaling, rid) == ([(1, 6)], ["cpu"]), "scaling comes back after a failure too"
    assert suspended(scaling, rid) == [False]
    assert world.wait_completed()["taskDefinition"] == td1


def test_rollback_returns_the_service_to_the_prepared_data(world: EcsWorld, run: Run) -> None:
    td1 = existing_service(world, desired=3)
    scaling, rid = register_scaling(world)
    prepared = run("ECS_PREPARE_ROLLBACK_DATA", {"infrastructure": infra(world),
                                                 "serviceDefinition": service_definition(world)})
    assert prepared["status"] == "SUCCEEDED", log_text(prepared)
    rollback_data = result(prepared)["rollbackData"]
    assert rollback_data["taskDefinitionArn"] == td1
    assert rollback_data["desiredCount"] == 3

    deployed = run("ECS_ROLLING_DEPLOY", deploy_data(world, "app:2", desiredCount=1))
    assert deployed["status"] == "SUCCEEDED", log_text(deployed)
    assert world.service()["desiredCount"] == 1

    rolled = run("ECS_ROLLING_ROLLBACK", {"infrastructure": infra(world), "rollbackData": rollback_data,
                                          "pollIntervalS": 0.3})

    assert rolled["status"] == "SUCCEEDED", log_text(rolled)
    service = world.service()
    assert (service["taskDefinition"], service["desiredCount"], service["runningCount"]) == (td1, 3, 3)
    assert scaling_state(scaling, rid) == ([(1, 6)], ["cpu"])


def test_rollback_of_a_service_that_did_not_exist_deletes_it(world: EcsWorld, run: Run) -> None:
    prepared = run("ECS_PREPARE_ROLLBACK_DATA", {"infrastructure": infra(world),
                                                 "serviceDefinition": service_definition(world)})
    assert result(prepared)["rollbackData"]["existed"] is False
    assert run("ECS_ROLLING_DEPLOY", deploy_data(world, "app:1"))["status"] == "SUCCEEDED"

    rolled = run("ECS_ROLLING_ROLLBACK", {"infrastructure": infra(world),
                                          "rollbackData": result(prepared)["rollbackData"]})

    assert rolled["status"] == "SUCCEEDED", log_text(rolled)
    assert result(rolled)["deleted"] is True
    assert world.service()["status"] in ("DRAINING", "INACTIVE")


def test_an_unchanged_deploy_registers_and_updates_nothing(world: EcsWorld, run: Run) -> None:
    assert run("ECS_ROLLING_DEPLOY", deploy_data(world, "app:1"))["status"] == "SUCCEEDED"
    again = run("ECS_ROLLING_DEPLOY", deploy_data(world, "app:1"))
    assert again["status"] == "SUCCEEDED", log_text(again)
    out = result(again)
    assert (out["taskDefinitionRegistered"], out["updated"], out["created"]) == (False, False, False)
    assert len(world.ecs.list_task_definitions(familyPrefix=world.name)["taskDefinitionArns"]) == 1


def test_bad_manifests_are_refused_with_the_field_named(world: EcsWorld, run: Run) -> None:
    data = deploy_data(world, "app:1")
    data["taskDefinition"] = "family: x\ncontainerDefinitions: [ {name: app"
    task = run("ECS_ROLLING_DEPLOY", data)
    assert task["status"] in ("ERRORED", "FAILED")
    assert "taskDefinition: not valid JSON or YAML" in task["errorMessage"]
    data = deploy_data(world, "app:1")
    del data["serviceDefinition"]["serviceName"]
    task = run("ECS_ROLLING_DEPLOY", data)
    assert "serviceDefinition: 'serviceName' is required" in task["errorMessage"]
