"""Dry run with a structured diff (also in every real deploy's result), deploying an existing task
definition ARN, and cleaning up old revisions after a success."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.delegate.ecs.support import infra, log_text, result, service_definition, task_definition
from tests.devstack.aws.world import EcsWorld

pytestmark = pytest.mark.timeout(120)
Run = Callable[..., dict[str, Any]]


def data(world: EcsWorld, image: str, **extra: Any) -> dict[str, Any]:
    return {"infrastructure": infra(world), "pollIntervalS": 0.3, "verifyAfterCompletionS": 0,
            "taskDefinition": task_definition(world, image),
            "serviceDefinition": service_definition(world), **extra}


def revisions(world: EcsWorld) -> list[str]:
    listed = world.ecs.list_task_definitions(familyPrefix=world.name, status="ACTIVE")
    return list(listed["taskDefinitionArns"])


def test_a_dry_run_changes_nothing_and_returns_the_diff_a_real_deploy_returns(
        world: EcsWorld, run: Run) -> None:
    first = run("ECS_ROLLING_DEPLOY", data(world, "app:1"))
    assert first["status"] == "SUCCEEDED", log_text(first)
    assert result(first)["plan"]["service"]["create"] is True
    before = (revisions(world), world.service()["taskDefinition"], world.service()["desiredCount"])

    dry = run("ECS_ROLLING_DEPLOY", data(world, "app:2", dryRun=True, desiredCount=3))

    assert dry["status"] == "SUCCEEDED", log_text(dry)
    out = result(dry)
    assert out["dryRun"] is True
    assert (revisions(world), world.service()["taskDefinition"], world.service()["desiredCount"]) == before
    td = out["plan"]["taskDefinition"]
    assert td["register"] is True and td["latestArn"] == before[0][-1]
    assert td["changes"] == [{"path": "containerDefinitions[0].image", "from": "app:1", "to": "app:2"}]
    changes = {c["path"]: (c["from"], c["to"]) for c in out["plan"]["service"]["changes"]}
    assert changes == {"taskDefinition": (before[1], "(the revision to be registered)"),
                       "desiredCount": (2, 3)}
    assert "containerDefinitions[0].image: 'app:1' -> 'app:2'" in log_text(dry)

    real = run("ECS_ROLLING_DEPLOY", data(world, "app:2", desiredCount=3))
    assert real["status"] == "SUCCEEDED", log_text(real)
    assert result(real)["plan"] == out["plan"]


def test_an_existing_task_definition_arn_is_deployed_without_registering(world: EcsWorld, run: Run) -> None:
    old = world.task_definition(image="app:old")
    assert run("ECS_ROLLING_DEPLOY", data(world, "app:1"))["status"] == "SUCCEEDED"
    registered = revisions(world)

    task = run("ECS_ROLLING_DEPLOY", data(world, "app:1", taskDefinition=old))

    assert task["status"] == "SUCCEEDED", log_text(task)
    assert revisions(world) == registered
    assert (result(task)["taskDefinitionArn"], result(task)["taskDefinitionRegistered"]) == (old, False)
    assert world.service()["taskDefinition"] == old
    world.ecs.deregister_task_definition(taskDefinition=old)
    gone = run("ECS_ROLLING_DEPLOY", data(world, "app:1", taskDefinition=old))
    assert gone["status"] == "ERRORED"  # bad input: the task cannot run as given
    assert f"taskDefinition {old} is INACTIVE" in gone["errorMessage"]


def test_clean_up_deregisters_revisions_older_than_the_newest_n(world: EcsWorld, run: Run) -> None:
    for image in ("app:1", "app:2", "app:3"):
        world.task_definition(image=image)
    task = run("ECS_ROLLING_DEPLOY", data(world, "app:4", keepRevisions=2))

    assert task["status"] == "SUCCEEDED", log_text(task)
    active = revisions(world)
    assert [a.rsplit(":", 1)[-1] for a in active] == ["3", "4"]
    assert [a.rsplit(":", 1)[-1] for a in sorted(result(task)["deregistered"])] == ["1", "2"]
    assert "clean-up: deregistered 2 old revision(s)" in log_text(task)
