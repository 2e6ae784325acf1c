"""LocalAws itself: reset, one instance per process."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from devstack.aws.server import LocalAws
from tests.devstack.aws.world import EcsWorld

pytestmark = pytest.mark.timeout(60)


def test_reset_forgets_everything_and_the_scheduler_carries_on(local_aws: LocalAws) -> None:
    before = EcsWorld(local_aws, "before-reset")
    before.create_service(before.task_definition(), desired=1)
    local_aws.reset()
    with pytest.raises(ClientError) as raised:
        before.ecs.describe_services(cluster=before.cluster, services=["web"])
    assert raised.value.response["Error"]["Code"] == "ClusterNotFoundException"
    after = EcsWorld(local_aws, "after-reset")
    after.create_service(after.task_definition(), desired=2)
    assert after.wait_completed()["runningCount"] == 2


def test_a_second_instance_in_the_same_process_is_refused(local_aws: LocalAws) -> None:
    with pytest.raises(RuntimeError, match="already runs in this process"), LocalAws(port=0):
        pass
