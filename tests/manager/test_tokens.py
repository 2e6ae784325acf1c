"""Named delegate tokens: created, listed, revoked, rotated, expiring; encrypted at rest; a revoked
token's streaming delegates told REVOKED_TOKEN and their tasks handed back."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from manager.app import ManagerServer
from protocol import taskspec
from tests.manager.conftest import Agent, ServerFactory, Setup
from tests.support import Manager, start_delegate, wait_until

pytestmark = pytest.mark.timeout(120)
BASE = "/api/setup/delegate-tokens"


async def test_tokens_are_listed_without_values_and_stored_encrypted(
        setup: Setup, server: ManagerServer) -> None:
    made = await setup.call("POST", BASE, {"name": "team-a"})
    assert len(made["value"]) == 32
    listed = (await setup.call("GET", BASE))["tokens"]
    assert [t["name"] for t in listed] == ["default", "team-a"]
    assert all(t["status"] == "ACTIVE" and "value" not in t for t in listed)
    assert made["value"] not in str(listed)
    data = server.settings.data_dir
    for path in data.iterdir():  # the database, its WAL, delegate.env (the default's only)
        if path.is_file() and path.name != "delegate.env":
            assert made["value"].encode() not in path.read_bytes(), path.name
            assert server.account.delegate_token.encode() not in path.read_bytes(), path.name
    assert server.manager is not None
    rows = server.manager.conn.execute("SELECT * FROM delegate_tokens").fetchall()
    stored = repr([tuple(r) for r in rows]) + repr(server.manager.conn.execute(
        "SELECT * FROM account").fetchall()[0]["delegate_token"])
    assert made["value"] not in stored and server.account.delegate_token not in stored
    assert stat.S_IMODE(server.settings.key_path.stat().st_mode) == 0o600
    await setup.call("POST", BASE, {"name": "team-a"}, expect=409)
    await setup.call("POST", BASE, {"name": "bad name!"}, expect=400)


async def test_tokens_survive_a_restart(start_server: ServerFactory,
                                        session: aiohttp.ClientSession, tmp_path: Path) -> None:
    first = await start_server(data_dir=tmp_path / "keep")
    value = (await Setup(session, first).call("POST", BASE, {"name": "kept"}))["value"]
    await first.stop()
    again = await start_server(data_dir=tmp_path / "keep")
    a = Agent(session, again, token_hex=value)
    assert (await a.register())["delegateTokenName"] == "kept"


async def test_a_revoked_token_stops_its_delegates_and_hands_their_tasks_back(
        setup: Setup, agent: Callable[..., Agent]) -> None:
    value = (await setup.call("POST", BASE, {"name": "doomed"}))["value"]
    doomed = agent(host_name="doomed", token_hex=value, delegateGroupName="doomed")
    assert (await doomed.register())["delegateTokenName"] == "doomed"
    other = agent(host_name="other")
    await other.register()
    ws = await doomed.stream()
    task_id = await setup.submit(delegateGroupName="doomed")
    assert (await doomed.acquire(task_id))[0] == 200
    revoked = await setup.call("POST", f"{BASE}/doomed/revoke", {})
    assert revoked["delegatesTold"] == [doomed.delegate_id]
    frames = []
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        frames.append(msg.data)
    assert "REVOKED_TOKEN" in frames  # the real manager's plain string
    assert (await setup.task(task_id))["status"] == "QUEUED"  # handed back
    status, body = await doomed.heartbeat()
    assert status == 401 and body["responseMessages"][0]["code"] == "REVOKED_TOKEN"
    listed = {t["name"]: t for t in (await setup.call("GET", BASE))["tokens"]}
    assert listed["doomed"]["status"] == "REVOKED"
    assert (await other.heartbeat())[0] == 200  # the other token's delegates go on


async def test_rotation_with_and_without_grace(setup: Setup, agent: Callable[..., Agent]) -> None:
    old = (await setup.call("POST", BASE, {"name": "r"}))["value"]
    new = (await setup.call("POST", f"{BASE}/r/rotate", {"graceS": 60}))["value"]
    assert new != old
    assert (await agent(host_name="old", token_hex=old).register())["delegateTokenName"] == "r"
    assert (await agent(host_name="new", token_hex=new).register())["delegateTokenName"] == "r"
    newest = (await setup.call("POST", f"{BASE}/r/rotate", {}))["value"]
    status, body = await agent(host_name="older", token_hex=new).call(
        "POST", "/api/agent/delegates/register", {})
    assert status == 401 and body["responseMessages"][0]["code"] == "INVALID_TOKEN"
    assert (await agent(host_name="newest", token_hex=newest).register())["delegateId"]


async def test_an_expired_token_is_refused_as_expired(setup: Setup,
                                                     agent: Callable[..., Agent]) -> None:
    value = (await setup.call("POST", BASE, {"name": "short", "validForS": 1}))["value"]
    a = agent(host_name="short", token_hex=value)
    await a.register()
    await asyncio.sleep(1.5)
    status, body = await a.call("POST", "/api/agent/delegates/register", a.params)
    assert status == 401 and body["responseMessages"][0]["code"] == "EXPIRED_TOKEN"
    listed = {t["name"]: t for t in (await setup.call("GET", BASE))["tokens"]}
    assert listed["short"]["status"] == "EXPIRED"


async def test_the_download_embeds_the_token_the_user_picks(
        setup: Setup, session: aiohttp.ClientSession, server: ManagerServer) -> None:
    value = (await setup.call("POST", BASE, {"name": "ecs-prod"}))["value"]
    url = (f"{server.url}/api/setup/delegates/ecs-task-spec?delegateGroupName=g"
           "&image=registry.example.com/harness-delegate:1.0.0")
    async with session.get(url + "&tokenName=ecs-prod", headers=setup.headers) as resp:
        env = taskspec.env_of(taskspec.load_spec(await resp.read(), "download"))
    assert env["DELEGATE_TOKEN"] == value
    await setup.call("POST", f"{BASE}/ecs-prod/revoke", {})
    async with session.get(url + "&tokenName=ecs-prod", headers=setup.headers) as resp:
        assert resp.status == 400 and value not in await resp.text()


def test_revoking_a_token_stops_the_real_delegate_with_exit_5_and_its_task_runs_elsewhere(
        tmp_path: Path) -> None:
    marker = tmp_path / "first-run"
    script = f"if [ -e {marker} ]; then echo second run; else touch {marker}; sleep 60; fi"
    with Manager(tmp_path / "m", "--tick-s", "0.2", tls=True) as manager:
        value = manager.api("POST", BASE, {"name": "team-a"})["value"]
        doomed = start_delegate(manager, tmp_path / "a", DELEGATE_TOKEN=value,
                                DELEGATE_GROUP_NAME="a")
        spare = None
        try:
            wait_until(lambda: manager.delegate(status="CONNECTED", streaming=True), 30,
                       f"delegate streaming ({doomed.tail()})")
            task_id = manager.submit("SHELL_SCRIPT", {"script": script})
            wait_until(marker.exists, 30, "the task to start on the doomed delegate")
            told = manager.api("POST", f"{BASE}/team-a/revoke", {})["delegatesTold"]
            assert len(told) == 1
            assert doomed.wait(30) == 5, doomed.tail(20)
            assert doomed.find("delegate.token_revoked")
            spare = start_delegate(manager, tmp_path / "b", DELEGATE_GROUP_NAME="b")
            task = manager.wait_task(task_id, timeout=60)
            assert task["status"] == "SUCCEEDED", task
            assert any("second run" in ln["message"] for ln in task["logLines"])
            assert value not in "\n".join(doomed.lines)  # the token never reached a log
        finally:
            doomed.stop()
            if spare is not None:
                spare.stop()


def test_a_token_the_manager_keeps_refusing_self_destructs_after_the_limit(tmp_path: Path) -> None:
    with Manager(tmp_path / "m", tls=True) as manager:
        wrong = start_delegate(manager, tmp_path / "d", DELEGATE_TOKEN="0123456789abcdef" * 2,
                               DELEGATE_AUTH_FAILURE_LIMIT_S="3")
        try:
            assert wrong.wait(60) == 4, wrong.tail(20)
            said = wrong.find("delegate.self_destruct")
            assert said and "refused the delegate token for" in said[0]["reason"], wrong.tail(5)
        finally:
            wrong.stop()
