"""`local_aws`: one in-process local AWS (moto + ECS scheduler) for the session.

moto keeps its state per process, so there is one server per test session; tests isolate
themselves by making their own cluster, VPC and target group (`ecs_world`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from devstack.aws.server import LocalAws
from tests.devstack.aws.world import EcsWorld


@pytest.fixture(scope="session")
def local_aws() -> Iterator[LocalAws]:
    # Faster than the defaults (tests want seconds); steady_after_s stays above fail_after_s so a
    # task that crashes soon after starting still fails its deployment.
    with LocalAws(
        port=0, tick_s=0.05, task_start_s=0.2, task_stop_s=0.1, fail_after_s=0.2, steady_after_s=0.5,
        minute_s=0.2,
    ) as aws:
        yield aws


@pytest.fixture
def ecs_world(local_aws: LocalAws) -> EcsWorld:
    """A fresh cluster with a VPC, subnet, security group and an `ip` target group."""
    return EcsWorld(local_aws, f"t{uuid.uuid4().hex[:10]}")
