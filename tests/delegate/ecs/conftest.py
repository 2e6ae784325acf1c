"""ECS executors under test: a real manager and delegate processes, the local AWS in this process.

One local AWS per module (moto allows one per process: one already running, e.g. the session-wide
one of tests/devstack/aws, is reused; ours stops after the module so that one can start later).
Each test makes its own cluster (`world`), so tests do not see each other's services. The manager
and one delegate are shared per module; tests that restart a delegate start their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from delegate.ecs.rolling import AFTER_DEADLINE_S
from devstack.aws import server
from devstack.aws.server import LocalAws
from tests.delegate.ecs.support import BlueGreenWorld, aws_env
from tests.devstack.aws.world import EcsWorld
from tests.support import Manager, Process, start_delegate, wait_until


@pytest.fixture(scope="module")
def ecs_aws() -> Iterator[LocalAws]:
    with server.running_or_new() as aws:
        yield aws


@pytest.fixture(autouse=True)
def _no_faults_left(ecs_aws: LocalAws) -> Iterator[None]:
    yield
    ecs_aws.faults.clear()


@pytest.fixture(scope="module")
def ecs_manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    m = Manager(tmp_path_factory.mktemp("manager"), "--disconnect-after-s", "5",
                "--ecs-stale-slot-s", "3", "--task-orphan-s", "5", "--rebroadcast-s", "1")
    m.start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def ecs_delegate(ecs_manager: Manager, ecs_aws: LocalAws,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    proc = start_delegate(ecs_manager, tmp_path_factory.mktemp("delegate"), **aws_env(ecs_aws))
    proc.wait_event("manager.registered", timeout=30)
    yield proc
    proc.stop()


@pytest.fixture
def world(ecs_aws: LocalAws) -> EcsWorld:
    return EcsWorld(ecs_aws, f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture
def bg_world(ecs_aws: LocalAws) -> BlueGreenWorld:
    return BlueGreenWorld(ecs_aws, f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture
def run(ecs_manager: Manager, ecs_delegate: Process) -> Callable[..., dict[str, Any]]:
    """Submit a task through the manager and wait for its end; returns the task with its log."""

    def submit(task_type: str, data: dict[str, Any], timeout_s: float = 40.0) -> dict[str, Any]:
        task_id = ecs_manager.submit(task_type, data, timeoutMs=int(timeout_s * 1000))
        # A deploy that hits its deadline still resumes scaling and releases its lease, for up to
        # AFTER_DEADLINE_S more (AWS may be throttling those calls too), then reports.
        ecs_manager.wait_task(task_id, timeout=timeout_s + AFTER_DEADLINE_S + 15)
        # The log shipper may land its last lines just after the result.
        wait_until(lambda: ecs_manager.task(task_id).get("logLines"), 5, "task log lines")
        return ecs_manager.task(task_id)

    assert ecs_delegate.alive()
    return submit

