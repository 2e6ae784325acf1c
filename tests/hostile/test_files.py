"""Files and processes: a 0700 work dir with 0600 files for secrets and scripts, a bad profile that
fails its run and nothing else, the address that reaches the manager, a polling delegate that
honours SELF_DESTRUCT."""

from __future__ import annotations

import json
import socket
import stat

import psutil
import pytest
from aiohttp import web

from tests.hostile.conftest import Delegates, still_serving
from tests.hostile.scripted import ACCOUNT, DELEGATE_ID, HostileManager, envelope
from tests.support import wait_until

pytestmark = pytest.mark.timeout(90)


def mode(path: object) -> int:
    return stat.S_IMODE(path.stat().st_mode)  # type: ignore[attr-defined]


def test_work_dir_and_secret_files_are_private(hostile: HostileManager,
                                               delegates: Delegates) -> None:
    async def profile(_request: web.Request) -> web.Response:
        return envelope({"profileId": "p1", "name": "p", "profileLastUpdatedAt": 1,
                         "scriptContent": "echo profile ran"})

    async def unavailable(_request: web.Request) -> web.Response:
        return envelope(None, 503)

    hostile.answers["profile"] = profile
    hostile.answers["result"] = unavailable  # so that the result stays in the spool
    hostile.packages["t-1"] = {"delegateTaskId": "t-1", "accountId": ACCOUNT, "taskType": "NOOP",
                               "data": {}}
    work = delegates.tmp / "d1"
    work.mkdir()
    work.chmod(0o755)
    proc = delegates.start(DELEGATE_PROFILE_INTERVAL_S="0.5")
    proc.wait_event("stream.connected")
    hostile.push(json.dumps({"eventType": "DelegateTaskEvent", "accountId": ACCOUNT,
                             "delegateTaskId": "t-1"}))
    wait_until(lambda: hostile.requests("result"), 20, "a result attempt")
    wait_until(lambda: hostile.requests("profile-result"), 20, "the profile result")
    assert mode(work) == 0o700
    private = [work / "delegate_sequence_config", work / "profile", work / "profile.result",
               work / "spool" / "results" / "t-1.json"]
    for path in private:
        assert mode(path) == 0o600, f"{path.name} is {oct(mode(path))}"
    assert mode(work / "spool") == 0o700
    assert mode(work / "spool" / "results") == 0o700
    still_serving(proc, hostile)


def test_a_profile_with_a_nul_byte_fails_that_run_only(hostile: HostileManager,
                                                       delegates: Delegates) -> None:
    async def profile(_request: web.Request) -> web.Response:
        return envelope({"profileId": "p1", "name": "p", "profileLastUpdatedAt": 1,
                         "scriptContent": "echo a\u0000b"})

    hostile.answers["profile"] = profile
    proc = delegates.start(DELEGATE_PROFILE_INTERVAL_S="0.5")
    seen = wait_until(lambda: hostile.requests("profile-result"), 20, "the profile result")
    result = json.loads(seen[0].body)
    assert result["error"] is True
    assert "NUL" in result["output"]
    still_serving(proc, hostile)


def test_a_script_with_a_nul_byte_fails_that_task_only(hostile: HostileManager,
                                                       delegates: Delegates) -> None:
    hostile.packages["t-nul"] = {"delegateTaskId": "t-nul", "accountId": ACCOUNT,
                                 "taskType": "SHELL_SCRIPT",
                                 "data": {"script": "echo a\u0000b", "environment": {"A": "b"}}}
    proc = delegates.start()
    proc.wait_event("stream.connected")
    hostile.push(json.dumps({"eventType": "DelegateTaskEvent", "accountId": ACCOUNT,
                             "delegateTaskId": "t-nul"}))
    seen = wait_until(lambda: hostile.requests("result"), 20, "the task's result")
    response = json.loads(seen[0].body)["response"]
    assert response["status"] == "ERRORED" and "NUL" in response["errorMessage"]
    still_serving(proc, hostile)


def outward_address() -> str | None:
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and not addr.address.startswith("127."):
                return str(addr.address)
    return None


def test_the_reported_ip_is_the_one_that_reaches_the_manager(delegates: Delegates) -> None:
    address = outward_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to listen on")
    with HostileManager(host=address) as remote:
        delegates.manager = remote
        proc = delegates.start()
        seen = wait_until(lambda: remote.requests("register"), 20, "a register call")
        assert json.loads(seen[0].body)["ip"] == address
        proc.stop()


def test_a_polling_delegate_honours_self_destruct(hostile: HostileManager,
                                                  delegates: Delegates) -> None:
    proc = delegates.start(POLL_FOR_TASKS="true", DELEGATE_KEEPALIVE_INTERVAL_S="600")
    proc.wait_event("manager.registered")

    async def deleted(_request: web.Request) -> web.Response:
        return envelope({"delegateId": DELEGATE_ID, "status": "DELETED"})

    async def self_destruct(_request: web.Request) -> web.Response:
        return envelope({"delegateId": "", "action": "SELF_DESTRUCT"})

    hostile.answers["heartbeat"] = deleted
    hostile.answers["register"] = self_destruct
    assert proc.wait(30) == 4
    assert proc.find("delegate.self_destruct")
