"""AWS access per task: keys, assumed roles, denied access, throttling, a missing cluster, and the
ECS capability check the manager asks for before it assigns a task."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from devstack.aws.server import LocalAws
from tests.delegate.ecs.support import infra, log_text, service_definition, task_definition
from tests.devstack.aws.world import EcsWorld
from tests.support import Manager, Process, wait_until

pytestmark = pytest.mark.timeout(90)
Run = Callable[..., dict[str, Any]]
KEY_ID = "AKIADENIEDKEY0000001"
SECRET = "Sup3rS3cretDeniedKeyValue/abcdefghij"


def deploy_data(world: EcsWorld, **infra_extra: Any) -> dict[str, Any]:
    return {"infrastructure": infra(world, **infra_extra), "taskDefinition": task_definition(world),
            "serviceDefinition": service_definition(world, desired=1), "pollIntervalS": 0.3}


def test_keys_sent_with_the_task_are_used_and_never_shown(
        world: EcsWorld, run: Run, ecs_aws: LocalAws, ecs_delegate: Process) -> None:
    ecs_aws.faults.add(None, "AccessDeniedException", times=None, access_key=KEY_ID,
                       message="User is not authorized to perform this action")

    task = run("ECS_ROLLING_DEPLOY", deploy_data(world, accessKeyId=KEY_ID, secretAccessKey=SECRET))

    assert task["status"] == "FAILED"
    assert "AccessDeniedException" in task["errorMessage"]
    assert "not authorized" in task["errorMessage"]
    shown = f"{task}\n{ecs_delegate.lines}"
    assert KEY_ID not in shown
    assert SECRET not in shown


def test_a_role_is_assumed_from_the_delegates_own_credentials(world: EcsWorld, run: Run,
                                                               ecs_aws: LocalAws) -> None:
    before = ecs_aws.faults.calls[("sts", "AssumeRole")]
    role = "arn:aws:iam::123456789012:role/deployer"
    task = run("ECS_ROLLING_DEPLOY", deploy_data(world, roleArn=role, externalId="ext-1234567"))
    assert task["status"] == "SUCCEEDED", log_text(task)
    assert ecs_aws.faults.calls[("sts", "AssumeRole")] == before + 1


def test_a_role_that_refuses_to_be_assumed_fails_clearly(world: EcsWorld, run: Run,
                                                         ecs_aws: LocalAws) -> None:
    ecs_aws.faults.add("AssumeRole", "AccessDenied", times=None,
                       message="not authorized to perform sts:AssumeRole (external id mismatch)")
    role = "arn:aws:iam::123456789012:role/other"
    task = run("ECS_ROLLING_DEPLOY", deploy_data(world, roleArn=role, externalId="wrong-id-000"))
    assert task["status"] == "FAILED"
    assert f"cannot assume role {role}" in task["errorMessage"]
    assert "AccessDenied" in task["errorMessage"]
    assert "wrong-id-000" not in str(task)


def test_a_missing_cluster_fails_clearly(world: EcsWorld, run: Run) -> None:
    data = deploy_data(world)
    data["infrastructure"]["cluster"] = "no-such-cluster"
    task = run("ECS_ROLLING_DEPLOY", data)
    assert task["status"] == "FAILED"
    assert "ClusterNotFoundException" in task["errorMessage"]


def test_throttling_is_retried_and_the_deploy_succeeds(world: EcsWorld, run: Run,
                                                       ecs_aws: LocalAws) -> None:
    before = ecs_aws.faults.calls[("ecs", "CreateService")]
    ecs_aws.faults.add("CreateService", "ThrottlingException", times=2, message="Rate exceeded")
    task = run("ECS_ROLLING_DEPLOY", deploy_data(world))
    assert task["status"] == "SUCCEEDED", log_text(task)
    assert ecs_aws.faults.calls[("ecs", "CreateService")] == before + 3
    assert len(world.ecs.list_services(cluster=world.cluster)["serviceArns"]) == 1


def test_throttling_that_persists_fails_at_the_deadline_with_the_aws_code(
        world: EcsWorld, run: Run, ecs_aws: LocalAws) -> None:
    ecs_aws.faults.add("DescribeServices", "ThrottlingException", times=None, message="Rate exceeded")
    task = run("ECS_ROLLING_DEPLOY", deploy_data(world), timeout_s=6)
    assert task["status"] == "FAILED"
    assert "ThrottlingException: Rate exceeded" in task["errorMessage"]
    assert "retried until the task's deadline" in task["errorMessage"]
    assert log_text(task).count("retrying with backoff until the task's deadline") == 1, "told once"


def test_the_capability_check_passes_for_a_reachable_cluster_and_fails_for_a_missing_one(
        world: EcsWorld, ecs_manager: Manager, ecs_delegate: Process) -> None:
    good = ecs_manager.submit("SHELL_SCRIPT", {"script": "echo deploying"}, timeoutMs=20_000,
                              capabilities=[{"capabilityType": "ECS", "params": infra(world)}])
    assert ecs_manager.wait_task(good, timeout=30)["status"] == "SUCCEEDED"
    passed = ecs_delegate.wait_event("task.capabilities_checked", task_id=good)
    assert passed["passed"] is True
    assert f"cluster/{world.cluster} is ACTIVE" in passed["results"][0]

    bad = ecs_manager.submit("SHELL_SCRIPT", {"script": "echo never"}, timeoutMs=20_000,
                             capabilities=[{"capabilityType": "ECS",
                                            "params": {"region": "us-east-1", "cluster": "missing"}}])
    failed = ecs_delegate.wait_event("task.capabilities_checked", task_id=bad)
    assert failed["passed"] is False
    assert "cluster 'missing' not found" in failed["results"][0]
    wait_until(lambda: ecs_manager.task(bad)["status"] != "STARTED", 5, "the task not to start")
    assert ecs_manager.task(bad)["status"] in ("QUEUED", "VALIDATING", "FAILED", "ERRORED", "EXPIRED")
