"""Services on the local ECS roll out like ECS, seen through plain boto3 over HTTP."""

from __future__ import annotations

import math

import pytest
from botocore.exceptions import ClientError

from tests.devstack.aws.world import EcsWorld, task_ip, wait_for

pytestmark = pytest.mark.timeout(60)


def messages(service: dict) -> list[str]:
    return [e["message"] for e in service["events"]]


def test_a_new_service_starts_its_tasks_and_reaches_steady_state(ecs_world: EcsWorld) -> None:
    td = ecs_world.task_definition()
    created = ecs_world.create_service(td, desired=3)
    assert created["deployments"][0]["status"] == "PRIMARY"
    assert created["deployments"][0]["rolloutState"] == "IN_PROGRESS"

    service = ecs_world.wait_completed()

    assert (service["desiredCount"], service["runningCount"], service["pendingCount"]) == (3, 3, 0)
    deployment = service["deployments"][0]
    assert deployment["id"] == created["deployments"][0]["id"]
    assert deployment["rolloutStateReason"] == f"ECS deployment {deployment['id']} completed."
    events = messages(service)
    assert events[0] == "(service web) has reached a steady state."
    assert f"(service web) (deployment {deployment['id']}) deployment completed." in events
    assert any(m.startswith("(service web) has started 3 tasks: (task ") for m in events)
    assert len({e["id"] for e in service["events"]}) == len(events)
    stamps = [e["createdAt"] for e in service["events"]]
    assert stamps == sorted(stamps, reverse=True), "events come newest first"

    tasks = ecs_world.running_tasks()
    assert len(tasks) == 3
    assert {t["lastStatus"] for t in tasks} == {"RUNNING"}
    assert {t["group"] for t in tasks} == {"service:web"}
    assert {t["startedBy"] for t in tasks} == {deployment["id"]}
    assert ecs_world.healthy_targets() == {task_ip(t) for t in tasks}


def test_list_tasks_by_service_returns_only_that_services_tasks(ecs_world: EcsWorld) -> None:
    td = ecs_world.task_definition()
    ecs_world.create_service(td, desired=2, name="web")
    ecs_world.create_service(td, desired=1, name="worker")
    ecs_world.wait_completed("web")
    ecs_world.wait_completed("worker")
    web = ecs_world.ecs.list_tasks(cluster=ecs_world.cluster, serviceName="web")["taskArns"]
    worker = ecs_world.ecs.list_tasks(cluster=ecs_world.cluster, serviceName="worker")["taskArns"]
    assert len(web) == 2
    assert len(worker) == 1
    assert not set(web) & set(worker)


def test_an_update_replaces_every_task_with_the_new_revision(ecs_world: EcsWorld) -> None:
    td1 = ecs_world.task_definition()
    ecs_world.create_service(td1, desired=3)
    first = ecs_world.wait_completed()
    old_tasks = {t["taskArn"] for t in ecs_world.running_tasks()}
    td2 = ecs_world.task_definition(image="app:2")

    updated = ecs_world.ecs.update_service(cluster=ecs_world.cluster, service="web", taskDefinition=td2)[
        "service"
    ]

    deployments = updated["deployments"]
    assert [(d["status"], d["taskDefinition"]) for d in deployments] == [("PRIMARY", td2), ("ACTIVE", td1)]
    assert deployments[1]["id"] == first["deployments"][0]["id"]
    new_id = deployments[0]["id"]
    service = ecs_world.wait_completed()
    assert service["deployments"][0]["id"] == new_id
    assert service["taskDefinition"] == td2
    tasks = ecs_world.running_tasks()
    assert len(tasks) == 3
    assert {t["taskDefinitionArn"] for t in tasks} == {td2}
    assert not old_tasks & {t["taskArn"] for t in tasks}
    assert ecs_world.healthy_targets() == {task_ip(t) for t in tasks}
    old = ecs_world.ecs.describe_tasks(cluster=ecs_world.cluster, tasks=sorted(old_tasks))["tasks"]
    assert {(t["lastStatus"], t["stopCode"]) for t in old} == {("STOPPED", "ServiceSchedulerInitiated")}
    assert any(m.startswith("(service web) has stopped ") for m in messages(service))


def test_force_new_deployment_starts_a_new_deployment_on_the_same_revision(ecs_world: EcsWorld) -> None:
    td = ecs_world.task_definition()
    ecs_world.create_service(td, desired=1)
    first_id = ecs_world.wait_completed()["deployments"][0]["id"]
    updated = ecs_world.ecs.update_service(cluster=ecs_world.cluster, service="web", forceNewDeployment=True)
    assert len(updated["service"]["deployments"]) == 2
    service = ecs_world.wait_completed()
    assert service["deployments"][0]["id"] not in (first_id,)
    assert service["deployments"][0]["taskDefinition"] == td


def test_changing_only_desired_count_scales_without_a_new_deployment(ecs_world: EcsWorld) -> None:
    td = ecs_world.task_definition()
    ecs_world.create_service(td, desired=1)
    deployment_id = ecs_world.wait_completed()["deployments"][0]["id"]
    updated = ecs_world.ecs.update_service(cluster=ecs_world.cluster, service="web", desiredCount=3)
    assert updated["service"]["runningCount"] == 1, "the running count follows the tasks, not the request"
    wait_for(lambda: ecs_world.service()["runningCount"] == 3, "scale-out to 3")
    service = ecs_world.service()
    assert [d["id"] for d in service["deployments"]] == [deployment_id]
    ecs_world.ecs.update_service(cluster=ecs_world.cluster, service="web", desiredCount=0)
    wait_for(lambda: not ecs_world.running_tasks(), "scale-in to 0")
    assert ecs_world.service()["runningCount"] == 0


@pytest.mark.parametrize(("min_pct", "max_pct"), [(50, 100), (100, 150), (0, 200)])
def test_rollout_respects_minimum_healthy_and_maximum_percent(
    ecs_world: EcsWorld, min_pct: int, max_pct: int
) -> None:
    desired = 4
    min_healthy = math.ceil(desired * min_pct / 100)
    max_total = math.floor(desired * max_pct / 100)
    td1 = ecs_world.task_definition()
    ecs_world.create_service(td1, desired=desired, min_pct=min_pct, max_pct=max_pct)
    ecs_world.wait_completed()
    td2 = ecs_world.task_definition(image="app:2")
    ecs_world.ecs.update_service(cluster=ecs_world.cluster, service="web", taskDefinition=td2)

    observed = []

    def check() -> bool:
        service = ecs_world.service()
        running, pending = service["runningCount"], service["pendingCount"]
        observed.append((running, pending))
        assert running >= min_healthy, f"running {running} < minimum healthy {min_healthy}: {observed}"
        assert running + pending <= max_total, f"{running}+{pending} tasks > maximum {max_total}: {observed}"
        deployments = service["deployments"]
        return len(deployments) == 1 and deployments[0]["rolloutState"] == "COMPLETED"

    wait_for(check, "the rollout to complete", every_s=0.01)
    assert len(observed) > 3
    assert {t["taskDefinitionArn"] for t in ecs_world.running_tasks()} == {td2}


def test_create_service_is_idempotent_with_a_client_token(ecs_world: EcsWorld) -> None:
    td = ecs_world.task_definition()
    first = ecs_world.create_service(td, desired=1, clientToken="token-1")
    again = ecs_world.create_service(td, desired=1, clientToken="token-1")
    assert again["deployments"][0]["id"] == first["deployments"][0]["id"]
    with pytest.raises(ClientError) as raised:
        ecs_world.create_service(td, desired=1, clientToken="token-2")
    assert raised.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "not idempotent" in raised.value.response["Error"]["Message"]


def test_deployment_configuration_is_kept_and_checked(ecs_world: EcsWorld) -> None:
    td = ecs_world.task_definition()
    created = ecs_world.create_service(td, desired=1, min_pct=50, max_pct=150, breaker=True, rollback=True)
    assert created["deploymentConfiguration"] == {
        "minimumHealthyPercent": 50,
        "maximumPercent": 150,
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
    }
    with pytest.raises(ClientError) as raised:
        ecs_world.ecs.update_service(
            cluster=ecs_world.cluster,
            service="web",
            deploymentConfiguration={"minimumHealthyPercent": 150},
        )
    assert "minimumHealthyPercent=150" in raised.value.response["Error"]["Message"]


def test_stopping_a_service_task_gets_it_replaced(ecs_world: EcsWorld) -> None:
    td = ecs_world.task_definition()
    ecs_world.create_service(td, desired=2)
    ecs_world.wait_completed()
    victim = ecs_world.running_tasks()[0]
    ecs_world.ecs.stop_task(cluster=ecs_world.cluster, task=victim["taskArn"], reason="test")
    wait_for(
        lambda: (
            len([t for t in ecs_world.running_tasks() if t["lastStatus"] == "RUNNING"]) == 2
            and victim["taskArn"] not in {t["taskArn"] for t in ecs_world.running_tasks()}
        ),
        "a replacement task",
    )
    assert task_ip(victim) not in ecs_world.healthy_targets()


def test_deleting_a_service_stops_its_tasks(ecs_world: EcsWorld) -> None:
    td = ecs_world.task_definition()
    ecs_world.create_service(td, desired=2)
    ecs_world.wait_completed()
    ecs_world.ecs.delete_service(cluster=ecs_world.cluster, service="web", force=True)
    wait_for(lambda: not ecs_world.running_tasks(), "the deleted service's tasks to stop")
    assert not ecs_world.healthy_targets()
