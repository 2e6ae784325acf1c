"""The HarnessECS customer-managed policy, generated from the AWS calls the ECS executors make.

Every AWS call in `delegate/ecs/` goes through `await aws.call("<service>", "<operation>", ...)` with
string literals, so an AST scan finds them all; botocore's service models turn each into its IAM
action (`ecs` `update_service` -> `ecs:UpdateService`, `elbv2` -> `elasticloadbalancing:...`). Added
to that: `iam:PassRole` for the task and execution roles the delegate registers (only to ECS tasks
and Application Auto Scaling), the `logs` actions awslogs needs when the policy sits on the
instance role, and `sts:AssumeRole` for connectors that assume a role.

    python -m delegate.install.iam            # print the policy
    python -m delegate.install.iam --write    # rewrite docs/iam/HarnessECS.json

The committed `docs/iam/HarnessECS.json` is checked against this in the tests, so it cannot go stale.
"""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # delegate/
ECS_DIR = PACKAGE_ROOT / "ecs"
POLICY_PATH = PACKAGE_ROOT.parent / "docs" / "iam" / "HarnessECS.json"

#: always granted, whatever the scan finds (why: the module docstring)
EXTRA_ACTIONS = (
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "logs:DescribeLogStreams",
    "sts:AssumeRole",
    "sts:GetCallerIdentity",
)
PASS_ROLE_TO = ("ecs-tasks.amazonaws.com", "application-autoscaling.amazonaws.com")


class UnknownCall(ValueError):
    """A scanned call names a service or operation botocore does not know."""


@dataclass(frozen=True, order=True)
class Call:
    service: str
    operation: str
    where: str  # path:line, for messages


def scan(paths: Iterable[Path], root: Path = PACKAGE_ROOT.parent) -> list[Call]:
    """Every `<x>.call("<service>", "<operation>", ...)` with two string literals in `paths`."""
    found: list[Call] = []
    for path in sorted(paths):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "call" and len(node.args) >= 2):
                continue
            service, operation = node.args[0], node.args[1]
            if (isinstance(service, ast.Constant) and isinstance(service.value, str)
                    and isinstance(operation, ast.Constant) and isinstance(operation.value, str)):
                where = f"{_relative(path, root)}:{node.lineno}"
                found.append(Call(service.value, operation.value, where))
    return found


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def executor_files(ecs_dir: Path = ECS_DIR) -> list[Path]:
    return sorted(ecs_dir.rglob("*.py")) if ecs_dir.is_dir() else []


@cache
def _model(service: str) -> tuple[str, dict[str, str]]:
    """(IAM prefix, {snake_or_Pascal operation name: PascalName}) for a boto3 service name."""
    import botocore.session
    from botocore import xform_name
    from botocore.exceptions import UnknownServiceError

    try:
        model = botocore.session.get_session().get_service_model(service)
    except UnknownServiceError as exc:
        raise UnknownCall(f"service {service!r} is not a boto3 service name") from exc
    prefix = str(model.metadata.get("signingName") or model.endpoint_prefix)
    names: dict[str, str] = {}
    for op in model.operation_names:
        names[op] = op
        names[xform_name(op)] = op
    return prefix, names


def action(call: Call) -> str:
    """The IAM action of one call, e.g. `elasticloadbalancing:ModifyListener`."""
    prefix, names = _model(call.service)
    op = names.get(call.operation)
    if op is None:
        raise UnknownCall(f"{call.where}: {call.service!r} has no operation {call.operation!r} "
                          "(use the boto3 method name, e.g. 'update_service')")
    return f"{prefix}:{op}"


def actions(calls: Iterable[Call]) -> list[str]:
    return sorted({action(c) for c in calls})


def policy(calls: Iterable[Call]) -> dict[str, Any]:
    scanned = actions(calls)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "HarnessEcsDeployments",
                "Effect": "Allow",
                "Action": sorted({*scanned, *EXTRA_ACTIONS} - {"iam:PassRole"}),
                "Resource": "*",
            },
            {
                "Sid": "PassTaskRolesToEcs",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": "*",
                "Condition": {"StringLike": {"iam:PassedToService": list(PASS_ROLE_TO)}},
            },
        ],
    }


def render(calls: Iterable[Call] | None = None) -> str:
    found = scan(executor_files()) if calls is None else list(calls)
    return json.dumps(policy(found), indent=2) + "\n"


def _iter_lines(calls: list[Call]) -> Iterator[str]:
    for c in sorted(calls):
        yield f"  {c.where}: {c.service} {c.operation} -> {action(c)}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    calls = scan(executor_files())
    text = render(calls)
    if args == ["--write"]:
        POLICY_PATH.parent.mkdir(parents=True, exist_ok=True)
        POLICY_PATH.write_text(text)
        print(f"wrote {_relative(POLICY_PATH, PACKAGE_ROOT.parent)} from {len(calls)} call(s):",
              file=sys.stderr)
        for line in _iter_lines(calls):
            print(line, file=sys.stderr)
        return 0
    if args:
        print("usage: python -m delegate.install.iam [--write]", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
