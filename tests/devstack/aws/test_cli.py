"""`devstack aws` as a real process: ready line, serving, clean exit on SIGTERM and SIGINT."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import boto3
import pytest

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.timeout(60)


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "devstack", "aws", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ready_url(proc: subprocess.Popen[str], timeout_s: float = 30.0) -> str:
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout_s)
    assert lines, "no ready line"
    prefix = "local AWS ready at "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0][len(prefix) :].strip()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_on_a_free_port_and_stops_cleanly(sig: signal.Signals) -> None:
    proc = start("--port", "0", "--task-start-s", "0.2")
    try:
        url = ready_url(proc)
        assert url.startswith("http://127.0.0.1:")
        assert not url.endswith(":0")
        ecs = boto3.client(
            "ecs",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        ecs.create_cluster(clusterName="cli")
        assert ecs.list_clusters()["clusterArns"][0].endswith("cluster/cli")
        proc.send_signal(sig)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--port", "0", "--tick-s", "0"], "tick_s=0.0"),
        (["--port", "0", "--task-start-s", "-1"], "task_start_s=-1.0"),
        (["--port", "70000"], "port=70000"),
    ],
)
def test_bad_arguments_exit_with_a_clear_message(args: list[str], expected: str) -> None:
    proc = start(*args)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3
    assert expected in err
