"""Failures on demand (markers in the task definition) and ECS's circuit breaker and rollback."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.aws.scheduler import breaker_threshold
from tests.devstack.aws.world import EcsWorld, wait_for

pytestmark = pytest.mark.timeout(60)


def test_breaker_threshold_follows_aws() -> None:
    assert [breaker_threshold(n) for n in (0, 1, 6, 7, 10, 100, 1000)] == [3, 3, 3, 4, 5, 50, 200]


def _deployment(service: dict[str, Any], deployment_id: str) -> dict[str, Any] | None:
    return next((d for d in service["deployments"] if d["id"] == deployment_id), None)


@pytest.mark.parametrize("fail", ["start", "exit"])
def test_a_failing_update_with_the_breaker_fails_and_rolls_back(ecs_world: EcsWorld, fail: str) -> None:
    good = ecs_world.task_definition()
    ecs_world.create_service(good, desired=2, breaker=True, rollback=True)
    completed_id = ecs_world.wait_completed()["deployments"][0]["id"]
    bad = ecs_world.task_definition(image="app:broken", DEVSTACK_FAIL=fail)
    updated = ecs_world.ecs.update_service(cluster=ecs_world.cluster, service="web", taskDefinition=bad)
    failing_id = updated["service"]["deployments"][0]["id"]

    seen: dict[str, Any] = {}

    def failed() -> bool:
        deployment = _deployment(ecs_world.service(), failing_id)
        if deployment is not None and deployment["rolloutState"] == "FAILED":
            seen.update(deployment)
        return bool(seen)

    wait_for(failed, "the failing deployment to be marked FAILED")
    assert seen["failedTasks"] >= 3
    assert seen["rolloutStateReason"] == "ECS deployment circuit breaker: tasks failed to start."

    service = ecs_world.wait_completed()
    rollback = service["deployments"][0]
    assert rollback["id"] not in (failing_id, completed_id)
    assert rollback["taskDefinition"] == good
    assert rollback["rolloutStateReason"] == f"ECS deployment {rollback['id']} completed."
    assert service["taskDefinition"] == good
    assert {t["taskDefinitionArn"] for t in ecs_world.running_tasks()} == {good}
    events = [e["message"] for e in service["events"]]
    assert f"(service web) (deployment {failing_id}) deployment failed: tasks failed to start." in events
    assert f"(service web) rolling back to deployment {completed_id}." in events
    assert events[0] == "(service web) has reached a steady state."

    stopped = ecs_world.ecs.list_tasks(cluster=ecs_world.cluster, serviceName="web", desiredStatus="STOPPED")
    failed_tasks = [
        t
        for t in ecs_world.ecs.describe_tasks(cluster=ecs_world.cluster, tasks=stopped["taskArns"])["tasks"]
        if t["taskDefinitionArn"] == bad and t["stopCode"] != "ServiceSchedulerInitiated"
    ]
    assert len(failed_tasks) >= 3
    if fail == "start":
        assert {t["stopCode"] for t in failed_tasks} == {"TaskFailedToStart"}
        assert all("DEVSTACK_FAIL=start" in t["stoppedReason"] for t in failed_tasks)
    else:
        assert {t["stopCode"] for t in failed_tasks} == {"EssentialContainerExited"}
        assert {t["containers"][0]["exitCode"] for t in failed_tasks} == {1}


def test_the_breaker_without_rollback_fails_and_stops_launching(ecs_world: EcsWorld) -> None:
    good = ecs_world.task_definition()
    ecs_world.create_service(good, desired=2, breaker=True, rollback=False)
    ecs_world.wait_completed()
    bad = ecs_world.task_definition(DEVSTACK_FAIL="start")
    updated = ecs_world.ecs.update_service(cluster=ecs_world.cluster, service="web", taskDefinition=bad)
    failing_id = updated["service"]["deployments"][0]["id"]
    wait_for(
        lambda: ecs_world.service()["deployments"][0]["rolloutState"] == "FAILED", "the deployment to fail"
    )
    service = ecs_world.service()
    assert service["deployments"][0]["id"] == failing_id
    assert service["deployments"][0]["status"] == "PRIMARY"
    failed_count = service["deployments"][0]["failedTasks"]
    # No new tasks are launched for a FAILED deployment; the old tasks keep serving.
    wait_for(lambda: ecs_world.service()["pendingCount"] == 0, "pending tasks to settle")
    assert ecs_world.service()["deployments"][0]["failedTasks"] == failed_count
    assert {t["taskDefinitionArn"] for t in ecs_world.running_tasks()} == {good}
    assert ecs_world.service()["runningCount"] == 2


def test_without_the_breaker_the_service_keeps_retrying(ecs_world: EcsWorld) -> None:
    good = ecs_world.task_definition()
    ecs_world.create_service(good, desired=1, breaker=False)
    ecs_world.wait_completed()
    bad = ecs_world.task_definition(DEVSTACK_EXIT_CODE="7")
    ecs_world.ecs.update_service(cluster=ecs_world.cluster, service="web", taskDefinition=bad)
    wait_for(
        lambda: ecs_world.service()["deployments"][0]["failedTasks"] >= 5,
        "failed tasks to pile up past the threshold",
    )
    service = ecs_world.service()
    assert service["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    starts = [e for e in service["events"] if e["message"].startswith("(service web) has started 1 tasks")]
    assert len(starts) >= 5, "a replacement is started for each task that exited"
    assert any(
        "is unable to consistently start tasks successfully" in e["message"] for e in service["events"]
    )


def test_a_bad_marker_fails_the_task_with_a_reason_naming_it(ecs_world: EcsWorld) -> None:
    td = ecs_world.task_definition(DEVSTACK_EXIT_CODE="lots")
    stopped = ecs_world.wait_task(ecs_world.run_task(td)["taskArn"])
    assert stopped["stopCode"] == "TaskFailedToStart"
    assert "DEVSTACK_EXIT_CODE='lots'" in stopped["stoppedReason"]
