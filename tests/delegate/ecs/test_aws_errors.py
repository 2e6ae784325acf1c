"""An AWS call that fails for a reason that is not AWS's answer keeps its traceback and its message."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from delegate.ecs.aws import Aws
from delegate.ecs.inputs import AwsAccess
from delegate.errors import AwsPermanentError


async def test_an_unexpected_error_keeps_its_traceback_and_says_what_it_was() -> None:
    aws = Aws(AwsAccess(region="us-east-1", cluster="c", accessKeyId="AKIAEXAMPLEEXAMPLE12",
                        secretAccessKey="secret-example"))
    with capture_logs() as logs, pytest.raises(AwsPermanentError) as info:
        await aws.call("ecs", "no_such_operation")  # the client has no such method: AttributeError
    assert "AttributeError" in str(info.value) and "no_such_operation" in str(info.value)
    assert isinstance(info.value.__cause__, AttributeError)  # chained, not dropped
    crashed = [e for e in logs if e["event"] == "aws.call_crashed"]
    assert crashed and crashed[0].get("exc_info") is True, logs
