"""Container health checks and ELB target health on the local ECS (marker-driven)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.devstack.aws.world import EcsWorld, wait_for

pytestmark = pytest.mark.timeout(60)


def checked_definition(world: EcsWorld, image: str, **env: str) -> str:
    """A task definition whose container has a healthCheck."""
    return str(world.ecs.register_task_definition(
        family=world.name, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256",
        memory="512", containerDefinitions=[{
            "name": "app", "image": image, "essential": True, "portMappings": [{"containerPort": 8080}],
            "healthCheck": {"command": ["CMD-SHELL", "curl -f http://localhost:8080/ || exit 1"]},
            "environment": [{"name": k, "value": v} for k, v in env.items()]}],
    )["taskDefinition"]["taskDefinitionArn"])


def stopped(world: EcsWorld) -> list[dict[str, Any]]:
    listed = world.ecs.list_tasks(cluster=world.cluster, serviceName="web", desiredStatus="STOPPED")
    arns = listed["taskArns"]
    return list(world.ecs.describe_tasks(cluster=world.cluster, tasks=arns)["tasks"]) if arns else []


def test_container_health_check_failures_trip_the_breaker_and_roll_back(ecs_world: EcsWorld) -> None:
    good = checked_definition(ecs_world, "app:1")
    ecs_world.create_service(good, desired=2, breaker=True, rollback=True)
    ecs_world.wait_completed()
    assert {t["healthStatus"] for t in ecs_world.running_tasks()} == {"HEALTHY"}

    bad = checked_definition(ecs_world, "app:2", DEVSTACK_UNHEALTHY_AFTER="0.2")
    ecs_world.ecs.update_service(cluster=ecs_world.cluster, service="web", taskDefinition=bad)
    wait_for(lambda: ecs_world.service()["taskDefinition"] == good, "the breaker's rollback")
    service = ecs_world.wait_completed()

    failed = [d for d in ecs_world.service()["deployments"] if d["taskDefinition"] == bad]
    assert not failed or failed[0]["rolloutState"] == "FAILED"
    unhealthy = [t for t in stopped(ecs_world) if t["taskDefinitionArn"] == bad]
    assert len(unhealthy) >= 3, "the breaker's threshold for 2 tasks"
    assert {t["stoppedReason"] for t in unhealthy} == {"Task failed container health checks"}
    assert {t["healthStatus"] for t in unhealthy} == {"UNHEALTHY"}
    events = [e["message"] for e in service["events"]]
    assert any("failed container health checks." in m for m in events)
    assert any("deployment failed: tasks failed to start." in m for m in events)


def test_tasks_failing_elb_health_checks_are_replaced_after_the_grace_period(ecs_world: EcsWorld) -> None:
    td = ecs_world.task_definition(image="app:1", DEVSTACK_ELB_UNHEALTHY="1")
    ecs_world.create_service(td, desired=1, healthCheckGracePeriodSeconds=1)
    first = wait_for(lambda: next(
        (t for t in ecs_world.running_tasks() if t["lastStatus"] == "RUNNING"), None), "a running task")
    health = ecs_world.elbv2.describe_target_health(TargetGroupArn=ecs_world.target_group)
    states = {(h["TargetHealth"]["State"], h["TargetHealth"].get("Reason"))
              for h in health["TargetHealthDescriptions"]}
    assert ("unhealthy", "Target.ResponseCodeMismatch") in states

    def replaced() -> bool:
        return any(t["taskArn"] == first["taskArn"] for t in stopped(ecs_world)) and any(
            t["taskArn"] != first["taskArn"] for t in ecs_world.running_tasks())

    wait_for(replaced, "the unhealthy task to be stopped and replaced")
    gone = next(t for t in stopped(ecs_world) if t["taskArn"] == first["taskArn"])
    why = f"Task failed ELB health checks in (target-group {ecs_world.target_group})"
    assert gone["stoppedReason"] == why
    assert (gone["stoppingAt"] - gone["startedAt"]).total_seconds() >= 1.0, "not before the grace period"
