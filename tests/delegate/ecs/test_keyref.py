"""Keys named by a reference to Secrets Manager or SSM Parameter Store, resolved by the delegate with
its own role, used for the task's calls, and never shown."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from devstack.aws.server import LocalAws
from tests.delegate.ecs.support import infra, log_text, service_definition, task_definition
from tests.devstack.aws.world import EcsWorld
from tests.support import Process

pytestmark = pytest.mark.timeout(90)
Run = Callable[..., dict[str, Any]]
DENIED_KEY = "AKIAREFDENIED0000001"
DENIED_SECRET = "Ref3rencedS3cretValue/abcdefghijklmn"


def deploy_data(world: EcsWorld, ref: str) -> dict[str, Any]:
    return {"infrastructure": infra(world, credentialsRef=ref), "taskDefinition": task_definition(world),
            "serviceDefinition": service_definition(world, desired=1), "pollIntervalS": 0.3}


def test_keys_from_secrets_manager_are_used_and_never_shown(
        world: EcsWorld, run: Run, ecs_aws: LocalAws, ecs_delegate: Process) -> None:
    secrets = boto3.client("secretsmanager", **ecs_aws.client_kwargs())
    name = f"deployer-{uuid.uuid4().hex[:8]}"
    secrets.create_secret(Name=name, SecretString=json.dumps(
        {"accessKeyId": DENIED_KEY, "secretAccessKey": DENIED_SECRET}))
    ecs_aws.faults.add(None, "AccessDeniedException", times=None, access_key=DENIED_KEY,
                       message="User is not authorized to perform this action")

    task = run("ECS_ROLLING_DEPLOY", deploy_data(world, f"secretsmanager:{name}"))

    assert task["status"] == "FAILED", log_text(task)
    assert "AccessDeniedException" in task["errorMessage"], "the referenced keys made the calls"
    shown = f"{task}\n{ecs_delegate.lines}"
    assert DENIED_KEY not in shown and DENIED_SECRET not in shown


def test_keys_from_an_ssm_parameter_deploy(world: EcsWorld, run: Run, ecs_aws: LocalAws) -> None:
    ssm = boto3.client("ssm", **ecs_aws.client_kwargs())
    name = f"/deploy/{uuid.uuid4().hex[:8]}/keys"
    ssm.put_parameter(Name=name, Type="SecureString", Value=json.dumps(
        {"AccessKeyId": "AKIAREFGOOD000000001", "SecretAccessKey": "GoodReferencedSecret/0123456789"}))
    before = ecs_aws.faults.calls[("ssm", "GetParameter")]

    task = run("ECS_ROLLING_DEPLOY", deploy_data(world, f"ssm:{name}"))

    assert task["status"] == "SUCCEEDED", log_text(task)
    assert ecs_aws.faults.calls[("ssm", "GetParameter")] == before + 1


def test_a_reference_that_holds_no_keys_fails_naming_the_reference_only(
        world: EcsWorld, run: Run, ecs_aws: LocalAws) -> None:
    secrets = boto3.client("secretsmanager", **ecs_aws.client_kwargs())
    name = f"notkeys-{uuid.uuid4().hex[:8]}"
    secrets.create_secret(Name=name, SecretString="hunter2-plain-password")

    task = run("ECS_ROLLING_DEPLOY", deploy_data(world, f"secretsmanager:{name}"))

    assert task["status"] == "ERRORED"
    assert f"credentialsRef secretsmanager:{name}: its value is not a JSON object" in task["errorMessage"]
    assert "hunter2" not in str(task)
