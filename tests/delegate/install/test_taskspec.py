"""The ECS task spec download: both modes hold what ECS and the delegate need, pass botocore's own
parameter validation, and bad input gets a message naming it."""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from delegate import config
from protocol import taskspec
from protocol.taskspec import SpecError, SpecInputs

TOKEN = "0123456789abcdef0123456789abcdef"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/harness-delegate:1.0.0"


def inputs(**changes: Any) -> SpecInputs:
    base: dict[str, Any] = {"account_id": "acct1", "delegate_token": TOKEN,
                            "manager_host_and_port": "https://manager.example.com:443/",
                            "delegate_group_name": "ecs-group", "image": IMAGE}
    base.update(changes)
    return SpecInputs(**base)


def validate(operation: str, params: dict[str, Any]) -> None:
    """botocore's client-side validation, as `aws` and boto3 run it before sending."""
    model = botocore.session.get_session().get_service_model("ecs").operation_model(operation)
    report = ParamValidator().validate(params, model.input_shape)
    assert not report.has_errors(), report.generate_report()


def env(spec: dict[str, Any]) -> dict[str, str]:
    return taskspec.env_of(spec)


def test_bridge_mode_is_the_harness_shape_sized_for_this_delegate() -> None:
    spec = taskspec.task_spec(inputs())
    validate("RegisterTaskDefinition", spec)
    (c,) = spec["containerDefinitions"]
    assert spec["family"] == "harness-delegate-task-spec"
    assert spec["requiresCompatibilities"] == ["EC2"]
    assert c["name"] == "ecs-delegate" and c["image"] == IMAGE
    assert c["hostname"] == "Harness-ECS-Delegate"
    assert c["portMappings"][0]["containerPort"] == 8080
    assert int(spec["memory"]) <= 1024 and c["memoryReservation"] <= int(spec["memory"])
    assert c["healthCheck"]["command"][0] == "CMD" and "/health" in c["healthCheck"]["command"][-1]


def test_awsvpc_mode_is_ready_for_fargate() -> None:
    spec = taskspec.task_spec(inputs(awsvpc=True, aws_account_id="123456789012", region="eu-west-1"))
    validate("RegisterTaskDefinition", spec)
    (c,) = spec["containerDefinitions"]
    assert spec["networkMode"] == "awsvpc" and spec["requiresCompatibilities"] == ["FARGATE"]
    assert spec["family"] == "harness-delegate-task-spec-fargate"  # never the bridge one's
    assert "hostname" not in c
    assert spec["executionRoleArn"] == "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
    assert int(spec["memory"]) in taskspec.FARGATE_SIZES[int(spec["cpu"])]
    assert c["logConfiguration"]["logDriver"] == "awslogs"
    assert c["logConfiguration"]["options"]["awslogs-region"] == "eu-west-1"
    assert c["portMappings"][0]["hostPort"] == c["portMappings"][0]["containerPort"] == 8080


def test_service_spec_passes_create_service_validation() -> None:
    spec = taskspec.service_spec(inputs(awsvpc=True), cluster="c1", subnets=("subnet-1",),
                                 security_groups=("sg-1",))
    validate("CreateService", spec)
    assert spec["launchType"] == "FARGATE"
    assert spec["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED"


def test_environment_is_one_the_delegate_accepts() -> None:
    spec = taskspec.task_spec(inputs(profile_id="prof1", hostname="my-host"))
    values = env(spec)
    assert values["ACCOUNT_ID"] == "acct1"
    assert values["MANAGER_HOST_AND_PORT"] == "https://manager.example.com:443"
    assert values["DELEGATE_GROUP_NAME"] == "ecs-group" and values["DELEGATE_PROFILE"] == "prof1"
    assert values["DELEGATE_TYPE"] == "ECS" and values["POLL_FOR_TASKS"] == "false"
    assert spec["containerDefinitions"][0]["hostname"] == "my-host"
    assert all(isinstance(v, str) and v for v in values.values())
    settings = config.load(values)  # the delegate's own settings accept the spec as is
    assert settings.account_id == "acct1" and settings.is_ecs


def test_base64_token_is_normalised_to_hex() -> None:
    import base64

    b64 = base64.b64encode(TOKEN.encode()).decode()
    assert env(taskspec.task_spec(inputs(delegate_token=b64)))["DELEGATE_TOKEN"] == TOKEN


@pytest.mark.parametrize(("changes", "named"), [
    ({"delegate_token": "nothex"}, "delegate token"),
    ({"manager_host_and_port": "manager:443"}, "manager URL"),
    ({"delegate_group_name": "bad group!"}, "delegate group name"),
    ({"awsvpc": True, "hostname": "h1"}, "hostname"),
    ({"hostname": "under_score"}, "hostname"),
    ({"region": "mars"}, "region"),
    ({"aws_account_id": "12"}, "AWS account id"),
    ({"awsvpc": True, "sizing": taskspec.Sizing(task_cpu=256, task_memory_mib=4096)}, "Fargate pair"),
])
def test_bad_input_is_named(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(SpecError, match=named) as info:
        taskspec.task_spec(inputs(**changes))
    assert TOKEN not in str(info.value)


def test_archive_holds_the_three_files_in_the_guides_folder() -> None:
    data = taskspec.archive(inputs(awsvpc=True))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = sorted(tar.getnames())
        readme = tar.extractfile("harness-delegate-ecs/README.txt").read().decode()  # type: ignore[union-attr]
        spec = json.load(tar.extractfile("harness-delegate-ecs/ecs-task-spec.json"))  # type: ignore[arg-type]
    assert names == ["harness-delegate-ecs", "harness-delegate-ecs/README.txt",
                     "harness-delegate-ecs/ecs-task-spec.json",
                     "harness-delegate-ecs/service-spec-for-awsvpc-mode.json"]
    assert spec["networkMode"] == "awsvpc"
    assert "6 GB" in readme and "512 MiB" in readme  # the README says why it is smaller
    assert "executionRoleArn" in readme and TOKEN not in readme
    assert taskspec.load_spec(data, "download") == spec


def test_load_spec_explains_a_wrong_file() -> None:
    with pytest.raises(SpecError, match="not JSON"):
        taskspec.load_spec(b"hello", "--spec x.txt")
    with pytest.raises(SpecError, match="containerDefinitions"):
        taskspec.load_spec(b"{}", "--spec x.json")


def test_an_unchanged_spec_is_recognised_in_what_aws_echoes_back() -> None:
    from delegate.ecs.manifests import same_task_definition

    spec = taskspec.task_spec(inputs(awsvpc=True, aws_account_id="123456789012"))
    echoed = json.loads(json.dumps(spec))
    echoed.update(revision=3, status="ACTIVE", taskDefinitionArn="arn:...:3", volumes=[])
    container = echoed["containerDefinitions"][0]
    container["environment"].reverse()
    container.update(mountPoints=[], volumesFrom=[], systemControls=[])
    container["logConfiguration"]["secretOptions"] = []
    assert same_task_definition(echoed, spec)
    container["image"] = IMAGE.replace("1.0.0", "2.0.0")
    assert not same_task_definition(echoed, spec)


@pytest.mark.parametrize("image", ["harness/delegate", "harness/delegate:latest",
                                   "docker.io/harness/delegate:1.0.0", "my-delegate:1.0.0",
                                   "registry.example.com/harness-delegate",
                                   "registry.example.com/harness-delegate:latest"])
def test_docker_hubs_delegate_and_latest_are_refused_with_what_to_pass(image: str) -> None:
    with pytest.raises(SpecError) as refused:
        taskspec.task_spec(inputs(image=image))
    message = str(refused.value)
    assert repr(image) in message and "scripts/build-image --push REGISTRY/REPO:TAG" in message


def test_roles_go_into_the_spec_in_both_modes() -> None:
    task_role = "arn:aws:iam::123456789012:role/HarnessDelegateTaskRole"
    execution = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
    for awsvpc in (False, True):
        spec = taskspec.task_spec(inputs(awsvpc=awsvpc, task_role_arn=task_role,
                                         execution_role_arn=execution))
        validate("RegisterTaskDefinition", spec)
        assert spec["taskRoleArn"] == task_role and spec["executionRoleArn"] == execution
    with pytest.raises(SpecError, match="task role ARN"):
        taskspec.task_spec(inputs(task_role_arn="HarnessDelegateTaskRole"))
