"""Secrets stay in the delegate: a script of the same uid cannot read the delegate's environment or
memory, sees none of its credentials in its own environment, and what it prints of the token, in
whatever case or base64, is masked before it leaves."""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from tests.hostile.conftest import Delegates, still_serving
from tests.hostile.scripted import ACCOUNT, HostileManager
from tests.support import wait_until

pytestmark = pytest.mark.timeout(90)
NOBODY = 65534


def shipped(hostile: HostileManager) -> str:
    """Every log line the delegate sent, one per line."""
    lines = []
    for seen in hostile.requests("logs"):
        lines += [line["message"] for line in json.loads(seen.body)["lines"]]
    return "\n".join(lines)


def run_task(hostile: HostileManager, task_id: str, script: str,
             environment: dict[str, str] | None = None) -> dict[str, object]:
    hostile.packages[task_id] = {"delegateTaskId": task_id, "accountId": ACCOUNT,
                                 "taskType": "SHELL_SCRIPT",
                                 "data": {"script": script, "environment": environment or {}}}
    hostile.push(json.dumps({"eventType": "DelegateTaskEvent", "accountId": ACCOUNT,
                             "delegateTaskId": task_id}))
    found = wait_until(lambda: [s for s in hostile.requests("result")
                                if f"/tasks/{task_id}/" in s.raw_path], 30, f"{task_id} result")
    return json.loads(found[0].body)  # type: ignore[no-any-return]


def as_unprivileged(delegates: Delegates) -> list[str]:
    """The delegate's command, as an ordinary uid when the tests run as root (root may read any
    process's memory, so only a non-root delegate shows what non-dumpable protects). Its dirs move
    to a fresh directory that uid can reach (pytest's tmp_path is private to root)."""
    command = [sys.executable, "-m", "delegate"]
    if os.geteuid() != 0:
        return command
    delegates.tmp = Path(tempfile.mkdtemp(prefix="hostile-"))
    delegates.outside = delegates.tmp / "outside"
    for sub in ("d1", "outside/home", "outside/tmp"):
        (delegates.tmp / sub).mkdir(parents=True)
    for path in [delegates.tmp, *delegates.tmp.rglob("*")]:
        os.chown(path, NOBODY, NOBODY)
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]


def test_a_script_cannot_read_the_delegates_environment(hostile: HostileManager,
                                                        delegates: Delegates) -> None:
    secrets = {"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
               "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEXAMPLESESSIONTOKEN",
               "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
               "HTTPS_PROXY": "http://proxyuser:proxypass123@127.0.0.9:3128",
               "NO_PROXY": "127.0.0.1"}
    proc = delegates.start(command=as_unprivileged(delegates), **secrets)
    proc.wait_event("stream.connected")
    script = ("id -u; cat /proc/$PPID/environ && echo READ-PARENT; "
              f"cat /proc/{proc.pid}/environ && echo READ-DELEGATE; "
              "head -c 64 /proc/$PPID/mem && echo READ-MEM; env")
    result = run_task(hostile, "t-env", script)
    assert result["response"]["status"] in ("SUCCEEDED", "FAILED")  # type: ignore[index]
    out = shipped(hostile)
    assert "Permission denied" in out, out
    for proof in ("READ-PARENT", "READ-DELEGATE", "READ-MEM"):
        assert proof not in out, out
    for value in [hostile.token, *secrets.values()]:
        if value != "127.0.0.1":
            assert value not in out, f"{value[:8]}... reached the script"
    assert "proxyuser" not in out and "proxypass123" not in out
    assert "DELEGATE_TOKEN" not in out.upper()
    still_serving(proc, hostile)
    if delegates.tmp.parent == Path(tempfile.gettempdir()):
        proc.stop()
        assert delegates.written_outside() == []
        shutil.rmtree(delegates.tmp)
        delegates.started.remove(proc)


def test_lower_case_token_variable_is_not_passed_on(hostile: HostileManager,
                                                    delegates: Delegates) -> None:
    proc = delegates.start(drop=("DELEGATE_TOKEN",), delegate_token=hostile.token)
    proc.wait_event("stream.connected")
    run_task(hostile, "t-lower", "env")
    out = shipped(hostile)
    assert hostile.token not in out and "delegate_token" not in out.lower()


def test_the_token_is_masked_in_any_case_and_in_base64(hostile: HostileManager,
                                                       delegates: Delegates) -> None:
    proc = delegates.start()
    proc.wait_event("stream.connected")
    # the manager hands the token to a script: the worst case for the scrubber
    script = ('echo "$X"; echo "$X" | tr a-f A-F; echo "$X" | tr a-c A-C; printf %s "$X" | base64;'
              ' echo "$X" | base64; printf "ab%s" "$X" | base64 -w0; echo;'
              ' h="$X"; o=; while [ -n "$h" ]; do o="$o\\x${h:0:2}"; h=${h:2}; done;'
              ' printf "$o" | base64')
    result = run_task(hostile, "t-enc", script, {"X": hostile.token})
    out = shipped(hostile)
    token = hostile.token
    forms = [token, token.upper(), base64.b64encode(token.encode()).decode().rstrip("="),
             base64.b64encode(bytes.fromhex(token)).decode().rstrip("=")]
    for form in forms:
        assert form.lower() not in out.lower(), f"a form of the token got through: {out}"
    assert out.count("[redacted]") >= 6, out
    assert token not in json.dumps(result)
