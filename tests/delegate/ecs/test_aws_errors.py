"""The AWS adapter's bookkeeping: an unexpected error keeps its traceback and message; each call is
counted on the metrics of the delegate whose task made it."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from delegate.ecs.aws import Aws
from delegate.ecs.inputs import AwsAccess
from delegate.errors import AwsPermanentError
from delegate.metrics import AWS_CALLS, Metrics
from devstack.aws.server import LocalAws
from devstack.ecs_demo import delegate_aws_env


async def test_an_unexpected_error_keeps_its_traceback_and_says_what_it_was() -> None:
    aws = Aws(AwsAccess(region="us-east-1", cluster="c", accessKeyId="AKIAEXAMPLEEXAMPLE12",
                        secretAccessKey="secret-example"))
    with capture_logs() as logs, pytest.raises(AwsPermanentError) as info:
        await aws.call("ecs", "no_such_operation")  # the client has no such method: AttributeError
    assert "AttributeError" in str(info.value) and "no_such_operation" in str(info.value)
    assert isinstance(info.value.__cause__, AttributeError)  # chained, not dropped
    crashed = [e for e in logs if e["event"] == "aws.call_crashed"]
    assert crashed and crashed[0].get("exc_info") is True, logs


async def test_aws_calls_count_on_the_metrics_of_the_delegate_whose_task_made_them(
        ecs_aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in delegate_aws_env(ecs_aws).items():
        monkeypatch.setenv(name, value)
    first, second = Metrics(), Metrics()  # two delegates in one process, as devstack.swarm runs

    async def task_of(metrics: Metrics, calls: int) -> None:
        AWS_CALLS.set(metrics.aws_calls)  # what each delegate's runner does for its own tasks
        aws = Aws(AwsAccess(region="us-east-1", cluster="c"))
        for _ in range(calls):
            await aws.call("ecs", "list_clusters")

    await asyncio.gather(asyncio.create_task(task_of(first, 2)),
                         asyncio.create_task(task_of(second, 3)))

    def counted(metrics: Metrics) -> float:
        return metrics.aws_calls.labels(service="ecs", operation="list_clusters")._value.get()

    assert (counted(first), counted(second)) == (2, 3)
    assert AWS_CALLS.get() is None  # nothing leaks out of the tasks
