"""AWS calls go through the delegate's proxy (PROXY_*), and NO_PROXY keeps them direct.

The local AWS is reached by a name that does not resolve (`aws.invalid`): only a proxy can carry
those calls, and the local AWS itself answers proxy-form requests, so a deploy that succeeds went
through the proxy. The other way round, a dead proxy and a NO_PROXY CIDR that covers the endpoint:
a deploy that succeeds went direct. Each runs its own manager so no other delegate takes the task.
The ECS capability check the manager asks for before assigning a task makes the same decision.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.aws.server import LocalAws
from tests.delegate.ecs.support import aws_env, infra, log_text, service_definition, task_definition
from tests.devstack.aws.world import EcsWorld
from tests.support import Manager, start_delegate, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def own_manager(tmp_path: Path) -> Iterator[Manager]:
    with Manager(tmp_path / "manager") as manager:
        yield manager


def capability_check(manager: Manager, world: EcsWorld, work: Path, **env: str) -> dict[str, object]:
    """The `task.capabilities_checked` event of a task that asks for the ECS capability."""
    delegate = start_delegate(manager, work, **{**aws_env(world.aws), **env})
    try:
        delegate.wait_event("manager.registered", timeout=30)
        task_id = manager.submit("SHELL_SCRIPT", {"script": "echo checked"}, timeoutMs=30_000,
                                 capabilities=[{"capabilityType": "ECS", "params": infra(world)}])
        return delegate.wait_event("task.capabilities_checked", task_id=task_id, timeout=45)
    finally:
        delegate.stop()


def deploy(manager: Manager, world: EcsWorld, work: Path, **env: str) -> dict[str, object]:
    delegate = start_delegate(manager, work, **{**aws_env(world.aws), **env})
    try:
        delegate.wait_event("manager.registered", timeout=30)
        task_id = manager.submit("ECS_ROLLING_DEPLOY", {
            "infrastructure": infra(world), "taskDefinition": task_definition(world),
            "serviceDefinition": service_definition(world, desired=1), "pollIntervalS": 0.3},
            timeoutMs=60_000)
        manager.wait_task(task_id, timeout=75)
        wait_until(lambda: manager.task(task_id).get("logLines"), 5, "task log lines")
        return manager.task(task_id)
    finally:
        delegate.stop()


def test_aws_calls_go_through_the_proxy(world: EcsWorld, ecs_aws: LocalAws, own_manager: Manager,
                                        tmp_path: Path) -> None:
    before = ecs_aws.faults.calls[("ecs", "UpdateService")] + ecs_aws.faults.calls[("ecs", "CreateService")]
    task = deploy(own_manager, world, tmp_path / "d", AWS_ENDPOINT_URL=f"http://aws.invalid:{ecs_aws.port}",
                  PROXY_HOST="127.0.0.1", PROXY_PORT=str(ecs_aws.port), PROXY_MANAGER="false",
                  NO_PROXY="example.com,10.0.0.0/8,aws.invalid:1")
    assert task["status"] == "SUCCEEDED", log_text(task)
    after = ecs_aws.faults.calls[("ecs", "UpdateService")] + ecs_aws.faults.calls[("ecs", "CreateService")]
    assert after == before + 1


def test_no_proxy_cidr_keeps_aws_calls_direct(world: EcsWorld, ecs_aws: LocalAws, own_manager: Manager,
                                              tmp_path: Path) -> None:
    task = deploy(own_manager, world, tmp_path / "d", HTTPS_PROXY="http://127.0.0.1:9",
                  PROXY_HOST="127.0.0.1", PROXY_PORT="9", PROXY_MANAGER="false", NO_PROXY="127.0.0.0/8")
    assert task["status"] == "SUCCEEDED", log_text(task)


def test_the_capability_check_goes_through_the_proxy(world: EcsWorld, ecs_aws: LocalAws,
                                                      own_manager: Manager, tmp_path: Path) -> None:
    # botocore alone knows nothing of PROXY_HOST: only the delegate's own decision reaches aws.invalid
    checked = capability_check(own_manager, world, tmp_path / "d",
                               AWS_ENDPOINT_URL=f"http://aws.invalid:{ecs_aws.port}",
                               PROXY_HOST="127.0.0.1", PROXY_PORT=str(ecs_aws.port), PROXY_USER="u",
                               PROXY_PASSWORD="Pr0xyPassw0rd", PROXY_MANAGER="false")
    assert checked["passed"] is True, checked
    assert "Pr0xyPassw0rd" not in str(checked)


def test_the_capability_check_honours_a_no_proxy_cidr(world: EcsWorld, own_manager: Manager,
                                                       tmp_path: Path) -> None:
    # botocore's own NO_PROXY has no CIDR entries: left to it, the check would use the dead HTTP_PROXY
    checked = capability_check(own_manager, world, tmp_path / "d", HTTPS_PROXY="http://127.0.0.1:9",
                               HTTP_PROXY="http://127.0.0.1:9", PROXY_MANAGER="false",
                               NO_PROXY="127.0.0.0/8")
    assert checked["passed"] is True, checked
