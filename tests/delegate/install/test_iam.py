"""The HarnessECS policy: generated from the AWS calls in delegate/ecs/, committed, never stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from delegate.install import iam


def test_committed_policy_is_what_the_executors_need() -> None:
    assert iam.POLICY_PATH.exists(), "docs/iam/HarnessECS.json is missing"
    assert iam.POLICY_PATH.read_text() == iam.render(), (
        "docs/iam/HarnessECS.json is stale: the executors' AWS calls changed. "
        "Run: .venv/bin/python -m delegate.install.iam --write")


def test_every_call_found_is_a_real_botocore_operation() -> None:
    calls = iam.scan(iam.executor_files())
    for call in calls:
        assert ":" in iam.action(call)  # raises UnknownCall naming the file and line otherwise


def test_policy_shape_and_pass_role_is_limited_to_ecs() -> None:
    doc = json.loads(iam.render())
    allow, pass_role = doc["Statement"]
    assert doc["Version"] == "2012-10-17"
    assert "iam:PassRole" not in allow["Action"]
    assert {"logs:CreateLogStream", "logs:PutLogEvents", "sts:AssumeRole"} <= set(allow["Action"])
    assert pass_role["Action"] == "iam:PassRole"
    assert "ecs-tasks.amazonaws.com" in pass_role["Condition"]["StringLike"]["iam:PassedToService"]


def test_scan_maps_services_to_iam_prefixes(tmp_path: Path) -> None:
    src = tmp_path / "deploy.py"
    src.write_text(
        "async def go(aws, name):\n"
        "    await aws.call('ecs', 'update_service', cluster='c')\n"
        "    await aws.call('elbv2', 'ModifyListener')\n"
        "    await aws.call('application-autoscaling', 'register_scalable_target')\n"
        "    await aws.call('ecs', name)  # not a literal: not counted\n"
        "    other.call('x')\n")
    calls = iam.scan([src], root=tmp_path)
    assert iam.actions(calls) == ["application-autoscaling:RegisterScalableTarget",
                                  "ecs:UpdateService", "elasticloadbalancing:ModifyListener"]
    assert calls[0].where.startswith("deploy.py:")


@pytest.mark.parametrize(("service", "operation", "named"), [
    ("ecs", "update_servise", "no operation 'update_servise'"),
    ("ecz", "update_service", "service 'ecz'"),
])
def test_a_misspelt_call_is_reported_with_its_place(service: str, operation: str, named: str) -> None:
    with pytest.raises(iam.UnknownCall, match=named):
        iam.action(iam.Call(service, operation, "delegate/ecs/x.py:3"))
