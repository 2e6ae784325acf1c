"""A deploy re-delivered after its delegate died does not deploy a second time."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from devstack.aws.server import LocalAws
from tests.delegate.ecs.support import aws_env, infra, log_text, result, service_definition, task_definition
from tests.devstack.aws.world import EcsWorld
from tests.support import Manager, Process, wait_until

pytestmark = pytest.mark.timeout(90)


def test_a_redelivered_deploy_follows_the_first_deployment_instead_of_starting_another(
        world: EcsWorld, ecs_aws: LocalAws, manager: Manager, delegates: Callable[..., Process]) -> None:
    td1 = world.task_definition(image="app:1")
    world.create_service(td1, desired=4, min_pct=50, max_pct=100)
    world.wait_completed()
    calls = ecs_aws.faults.calls
    before = (calls[("ecs", "UpdateService")], calls[("ecs", "RegisterTaskDefinition")])
    first = delegates("d1", **aws_env(ecs_aws))
    first.wait_event("manager.registered", timeout=30)
    service = service_definition(world, desired=4, breaker=False)
    service["deploymentConfiguration"].update(minimumHealthyPercent=50, maximumPercent=100)
    task_id = manager.submit("ECS_ROLLING_DEPLOY", {
        "infrastructure": infra(world), "pollIntervalS": 0.3,
        "taskDefinition": task_definition(world, "app:2"), "serviceDefinition": service,
    }, timeoutMs=60_000)
    wait_until(lambda: "updated service" in log_text(manager.task(task_id)), 20, "the update")
    first.send(signal.SIGKILL)
    first.wait()
    first_deployment = world.service()["deployments"][0]["id"]

    second = delegates("d2", **aws_env(ecs_aws))
    task = manager.wait_task(task_id, timeout=60)

    assert task["status"] == "SUCCEEDED", log_text(task)
    assert result(task)["deploymentId"] == first_deployment
    assert result(task)["updated"] is True, "the first delivery updated the service"
    assert (calls[("ecs", "UpdateService")], calls[("ecs", "RegisterTaskDefinition")]) == (
        before[0] + 1, before[1] + 1), "one update and one registration in all"
    # both deliveries' logs are kept, the second after the first
    text = log_text(task)
    assert "updated service" in text
    assert "an earlier delivery of this task updated service web" in text
    assert text.rindex("COMPLETED") > text.index("updated service"), text
    final = world.service()
    assert [d["id"] for d in final["deployments"]] == [first_deployment]
    assert second.alive()


def test_scaling_taken_off_by_a_delegate_that_died_is_restored_by_the_redelivery(
        world: EcsWorld, ecs_aws: LocalAws, manager: Manager, delegates: Callable[..., Process]) -> None:
    from tests.delegate.ecs.test_rolling import register_scaling, scaling_state, suspended

    td1 = world.task_definition(image="app:1")
    world.create_service(td1, desired=4, min_pct=50, max_pct=100)
    world.wait_completed()
    scaling, rid = register_scaling(world)
    first = delegates("d1", **aws_env(ecs_aws))
    first.wait_event("manager.registered", timeout=30)
    service = service_definition(world, desired=4, breaker=False)
    service["deploymentConfiguration"].update(minimumHealthyPercent=50, maximumPercent=100)
    task_id = manager.submit("ECS_ROLLING_DEPLOY", {  # no scaling manifests in the task
        "infrastructure": infra(world), "pollIntervalS": 0.3,
        "taskDefinition": task_definition(world, "app:2"), "serviceDefinition": service,
    }, timeoutMs=60_000)
    wait_until(lambda: "updated service" in log_text(manager.task(task_id)), 20, "the update")
    first.send(signal.SIGKILL)  # after scaling was suspended, before it was resumed
    first.wait()
    assert suspended(scaling, rid) == [True]  # suspended while the delegate is dead

    delegates("d2", **aws_env(ecs_aws))
    task = manager.wait_task(task_id, timeout=60)

    assert task["status"] == "SUCCEEDED", log_text(task)
    assert "earlier delivery of this deploy suspended" in log_text(task)
    assert scaling_state(scaling, rid) == ([(1, 6)], ["cpu"])
    assert suspended(scaling, rid) == [False]
    arn = world.service()["serviceArn"]
    tags = world.ecs.list_tags_for_resource(resourceArn=arn)["tags"]
    assert not [t for t in tags if t["key"].startswith("harness-delegate-scaling")]
