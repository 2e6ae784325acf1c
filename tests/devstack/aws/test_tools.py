"""Third-party ECS clients complete against the local ECS: the AWS CLI's services-stable waiter
and fabfuel's ecs-deploy. Both run as real processes from .tools/ (scripts/tools installs them)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from devstack.aws.server import LocalAws
from tests.devstack.aws.world import EcsWorld

REPO = Path(__file__).resolve().parents[3]
TOOLS = REPO / ".tools"


@pytest.fixture(scope="session")
def tools() -> Path:
    subprocess.run([str(REPO / "scripts" / "tools")], check=True, timeout=300)
    return TOOLS


def tool_env(aws: LocalAws, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=aws.endpoint_url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        HOME=str(home),  # no ~/.aws of this machine
    )
    return env


@pytest.mark.timeout(180)
def test_aws_cli_waits_for_a_rollout_to_be_stable(tools: Path, ecs_world: EcsWorld, tmp_path: Path) -> None:
    td1 = ecs_world.task_definition()
    ecs_world.create_service(td1, desired=2)
    td2 = ecs_world.task_definition(image="app:2")
    env = tool_env(ecs_world.aws, tmp_path)
    aws = str(tools / "awscli" / "bin" / "aws")
    cluster = ["--cluster", ecs_world.cluster]
    subprocess.run(
        [aws, "ecs", "update-service", *cluster, "--service", "web", "--task-definition", td2],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    subprocess.run(
        [aws, "ecs", "wait", "services-stable", *cluster, "--services", "web"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    service = ecs_world.service()
    assert service["runningCount"] == 2
    assert service["deployments"][0]["taskDefinition"] == td2


@pytest.mark.timeout(180)
def test_ecs_deploy_completes_a_new_image(tools: Path, ecs_world: EcsWorld, tmp_path: Path) -> None:
    td1 = ecs_world.task_definition()
    ecs_world.create_service(td1, desired=2)
    ecs_world.wait_completed()
    ecs = str(tools / "ecs-deploy" / "bin" / "ecs")
    result = subprocess.run(
        [ecs, "deploy", ecs_world.cluster, "web", "--image", "app", "app:3", "--timeout", "90"],
        env=tool_env(ecs_world.aws, tmp_path),
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Deployment successful" in result.stdout
    service = ecs_world.wait_completed()
    td = ecs_world.ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    assert td["containerDefinitions"][0]["image"] == "app:3"
    assert {t["taskDefinitionArn"] for t in ecs_world.running_tasks()} == {service["taskDefinition"]}
