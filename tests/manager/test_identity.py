"""One identity per delegate: the account's token alone no longer acts as any delegate.

The attacks of the issue, each tried by a caller that holds the account's delegate token (and its
own registration), over TLS against the real manager: all refused. Plus the JWE checks (aud, exp,
iat), the token never in a URL, and a second process claiming a delegate's identity.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from joserfc import jwe
from joserfc.jwk import OctKey

from manager.app import ManagerServer
from tests.manager.conftest import Agent, Setup
from tests.support import Manager, start_delegate, wait_until

pytestmark = pytest.mark.timeout(30)


async def pair(agent: Callable[..., Agent]) -> tuple[Agent, Agent]:
    victim = agent(host_name="victim", delegateGroupName="g1", tags=["prod"])
    attacker = agent(host_name="attacker", delegateGroupName="g2")
    await victim.register()
    await attacker.register()
    assert victim.connection_id and attacker.connection_id
    assert victim.connection_id != attacker.connection_id
    return victim, attacker


def as_victim(attacker: Agent, victim: Agent) -> Agent:
    """The attacker's client aimed at the victim's id: its own token and credential."""
    attacker.delegate_id = victim.delegate_id
    return attacker


async def test_acquire_of_another_group_under_another_delegates_id_is_refused(
        agent: Callable[..., Agent], setup: Setup) -> None:
    victim, attacker = await pair(agent)
    task_id = await setup.submit(delegateGroupName="g1")
    status, body = await as_victim(attacker, victim).acquire(task_id)
    assert status == 403 and body["responseMessages"][0]["code"] == "DELEGATE_CONNECTION_INVALID"
    attacker.connection_id = None  # no credential at all
    status, _ = await attacker.acquire(task_id)
    assert status == 403
    assert (await setup.task(task_id))["status"] == "QUEUED"


async def test_another_delegates_stream_is_refused_before_the_upgrade(
        agent: Callable[..., Agent]) -> None:
    victim, attacker = await pair(agent)
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await as_victim(attacker, victim).stream()
    assert info.value.status == 403


async def test_heartbeat_and_unregister_as_another_delegate_are_refused(
        agent: Callable[..., Agent], setup: Setup) -> None:
    victim, attacker = await pair(agent)
    body = {**attacker.params, "delegateId": victim.delegate_id, "tags": ["hijacked"]}
    status, _ = await attacker.call("POST", "/api/agent/delegates/heartbeat-with-polling", body)
    assert status == 403
    status, _ = await attacker.call("POST", "/api/agent/delegates/unregister", {
        "delegateId": victim.delegate_id, "hostName": "victim"})
    assert status == 403
    seen = {d["delegateId"]: d for d in await setup.delegates()}[victim.delegate_id]
    assert seen["tags"] == ["prod"] and seen["status"] == "CONNECTED"


async def test_results_are_taken_only_from_the_delegate_that_acquired_the_task(
        agent: Callable[..., Agent], setup: Setup) -> None:
    victim, attacker = await pair(agent)
    never = await setup.submit()
    status, _ = await attacker.result(never)  # a task nobody acquired
    assert status == 409
    task_id = await setup.submit(delegateGroupName="g1")
    assert (await victim.acquire(task_id))[0] == 200
    status, _ = await attacker.result(task_id)  # as itself
    assert status == 409
    status, _ = await as_victim(attacker, victim).result(task_id)  # under the victim's id
    assert status == 403
    assert (await setup.task(task_id))["status"] == "STARTED"
    assert (await victim.result(task_id))[0] == 200
    assert (await setup.task(task_id))["status"] == "SUCCEEDED"
    assert (await setup.task(never))["status"] == "QUEUED"


def forged(server: ManagerServer, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": "h", "sub": server.account.account_id, "aud": server.url, "iat": now,
            "nbf": now - 60, "exp": now + 1800, "jti": str(uuid.uuid4()), **claims}
    key = OctKey.import_key(bytes.fromhex(server.account.delegate_token))
    return jwe.encrypt_compact({"alg": "dir", "enc": "A128GCM"}, json.dumps(body).encode(), key)


@pytest.mark.parametrize("claims", [
    {"aud": "https://another-manager.example.com"},
    {"exp": int(time.time()) + 10 * 365 * 86400},  # ten years
    {"iat": int(time.time()) + 3600, "exp": int(time.time()) + 3600 + 1800},  # issued in the future
    {"iat": None},
])
async def test_jwe_claims_are_checked(session: aiohttp.ClientSession, server: ManagerServer,
                                      claims: dict[str, Any]) -> None:
    token = forged(server, **{k: v for k, v in claims.items() if v is not None})
    if claims.get("iat", 0) is None:
        token = forged(server, iat="soon")
    async with session.post(f"{server.url}/api/agent/delegates/register",
                            headers={"Authorization": f"Delegate {token}"},
                            json={"accountId": server.account.account_id}) as resp:
        assert resp.status == 401
    good = forged(server)
    async with session.post(f"{server.url}/api/agent/delegates/register",
                            headers={"Authorization": f"Delegate {good}"},
                            json={"accountId": server.account.account_id}) as resp:
        assert resp.status == 400  # past authentication: the body is what is wrong


async def test_the_token_in_the_stream_url_is_not_accepted(
        session: aiohttp.ClientSession, server: ManagerServer,
        agent: Callable[..., Agent]) -> None:
    a = agent()
    await a.register()
    url = (f"{server.url}/stream/delegate/{server.account.account_id}"
           f"?delegateId={a.delegate_id}&token={a.tokens.get()}")
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await session.ws_connect(url, headers={"delegateConnectionId": a.connection_id or ""})
    assert info.value.status == 401
    ws = await a.stream()  # the same, with the token in the Authorization header
    await ws.close()


async def test_a_second_process_claiming_the_identity_supersedes_the_older(
        agent: Callable[..., Agent], setup: Setup) -> None:
    older = agent(host_name="twin")
    await older.register()
    ws = await older.stream()
    task_id = await setup.submit()
    assert (await older.acquire(task_id))[0] == 200
    newer = agent(host_name="twin", delegateRandomToken=older.params["delegateRandomToken"],
                  sequenceNum=older.params["sequenceNum"])
    await newer.register()
    assert newer.delegate_id == older.delegate_id and newer.connection_id != older.connection_id
    kinds = []
    while "DelegateConnectionSuperseded" not in kinds:
        kinds.append((await ws.receive_json(timeout=5))["eventType"])
    assert (await ws.receive(timeout=5)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    other = await setup.submit()
    status, body = await older.acquire(other)
    assert status == 409 and body["responseMessages"][0]["code"] == "DELEGATE_SUPERSEDED"
    assert (await older.result(task_id))[0] == 200  # it may finish what it runs
    assert (await newer.acquire(other))[0] == 200
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await older.stream()
    assert info.value.status == 409


def test_a_real_delegate_superseded_by_a_second_process_stops(tmp_path: Path) -> None:
    """Two delegate processes with one work dir (one ECS identity): the older exits 0."""
    with Manager(tmp_path / "m", "--tick-s", "0.2", tls=True) as manager:
        first = start_delegate(manager, tmp_path / "d")
        second = None
        try:
            wait_until(lambda: manager.delegate(status="CONNECTED", streaming=True), 30,
                       f"first delegate streaming ({first.tail()})")
            second = start_delegate(manager, tmp_path / "d")
            assert first.wait(30) == 0, first.tail(20)
            assert any(e.get("event") == "delegate.superseded" for e in first.events)
            wait_until(lambda: any(e.get("event") == "stream.connected" for e in second.events),
                       30, f"second delegate streaming ({second.tail()})")
            assert len(manager.delegates()) == 1
        finally:
            first.stop()
            if second is not None:
                second.stop()
