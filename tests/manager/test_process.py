"""`harness-manager serve` and `task` as real processes: delegate.env, restarts, signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from protocol.auth import TokenProvider
from tests.manager.conftest import free_port

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def start(data_dir: Path, port: int = 0) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    env_file = data_dir / "delegate.env"
    env_file.unlink(missing_ok=True)  # so that we wait for the new one
    proc = subprocess.Popen(
        [sys.executable, "-m", "manager", "serve", "--port", str(port), "--data-dir",
         str(data_dir), "--tick-s", "0.1"], cwd=REPO, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not env_file.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        assert time.monotonic() < deadline, "manager did not write delegate.env"
        time.sleep(0.05)
    return proc, read_env(env_file)


def stop(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    return proc.returncode, err.decode()


def call(env: dict[str, str], method: str, path: str, body: Any = None,
         auth: str | None = None) -> Any:
    req = urllib.request.Request(
        env["MANAGER_HOST_AND_PORT"] + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": auth or f"Bearer {env['DEVSTACK_API_KEY']}",
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["resource"]


def register(env: dict[str, str]) -> str:
    tokens = TokenProvider(token_hex=env["DELEGATE_TOKEN"], account_id=env["ACCOUNT_ID"],
                           host_name="h", audience=env["MANAGER_HOST_AND_PORT"])
    body = {"accountId": env["ACCOUNT_ID"], "hostName": "Harness-ECS-Delegate",
            "version": "1", "delegateType": "ECS", "delegateRandomToken": uuid.uuid4().hex}
    res = call(env, "POST", f"/api/agent/delegates/register?accountId={env['ACCOUNT_ID']}",
               body, auth=f"Delegate {tokens.get()}")
    return str(res["delegateId"])


def test_state_survives_a_restart_and_sigterm_exits_0(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc, env = start(data)
    try:
        assert env["MANAGER_HOST_AND_PORT"].startswith("http://127.0.0.1:")
        assert len(env["DELEGATE_TOKEN"]) == 32
        delegate_id = register(env)
        task_id = call(env, "POST", "/api/setup/tasks",
                       {"taskType": "SHELL_SCRIPT", "data": {"script": "true"}})["taskId"]
    finally:
        code, err = stop(proc)
    assert code == 0
    assert env["DELEGATE_TOKEN"] not in err
    assert env["DEVSTACK_API_KEY"] not in err
    port = int(env["MANAGER_HOST_AND_PORT"].rsplit(":", 1)[1])
    proc, env2 = start(data, port)
    try:
        assert env2 == env
        groups = call(env2, "GET", "/api/setup/delegates")["groups"]
        assert [d["delegateId"] for g in groups for d in g["delegates"]] == [delegate_id]
        assert call(env2, "GET", f"/api/setup/tasks/{task_id}")["status"] == "QUEUED"
        assert register(env2)  # the same token still works
    finally:
        assert stop(proc)[0] == 0


def test_task_cli_submits_and_shows(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc, _env = start(data, free_port())
    try:
        out = subprocess.run(
            [sys.executable, "-m", "manager", "task", "submit", "--data-dir", str(data),
             "--type", "SHELL_SCRIPT", "--data", '{"script": "echo hi"}', "--selector", "nobody",
             "--timeout-ms", "300"], cwd=REPO, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        task_id = out.stdout.strip()
        shown = subprocess.run(
            [sys.executable, "-m", "manager", "task", "show", task_id, "--data-dir", str(data),
             "--follow"], cwd=REPO, capture_output=True, text=True, timeout=30)
        assert shown.returncode == 1
        assert "status: EXPIRED" in shown.stdout
        assert "no connected delegate" in shown.stdout
        bad = subprocess.run(
            [sys.executable, "-m", "manager", "task", "submit", "--data-dir", str(data),
             "--type", "SHELL_SCRIPT", "--data", "not json"], cwd=REPO, capture_output=True,
            text=True, timeout=30)
        assert bad.returncode == 2
        assert "--data is not valid JSON" in bad.stderr
    finally:
        stop(proc)
