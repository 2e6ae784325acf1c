"""Every agent call needs a current delegate token of this account; the answer never echoes it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from manager.app import ManagerServer
from protocol.auth import TokenProvider
from tests.manager.conftest import Agent

pytestmark = pytest.mark.timeout(20)


async def test_missing_token_is_401_in_the_envelope(
        session: aiohttp.ClientSession, server: ManagerServer) -> None:
    async with session.post(f"{server.url}/api/agent/delegates/register",
                            json={"accountId": server.account.account_id}) as resp:
        body = await resp.json()
    assert resp.status == 401
    assert body["resource"] is None
    assert body["responseMessages"][0]["code"] == "INVALID_TOKEN"


async def test_token_of_another_key_is_401_and_not_echoed(
        session: aiohttp.ClientSession, server: ManagerServer,
        agent: Callable[..., Agent]) -> None:
    stranger = agent(token_hex="0123456789abcdef0123456789abcdef")
    token = stranger.tokens.get()
    status, body = await stranger.call("POST", "/api/agent/delegates/register", stranger.params)
    assert status == 401
    assert body["responseMessages"][0]["code"] == "INVALID_TOKEN"
    assert token not in str(body)
    assert server.account.delegate_token not in str(body)


async def test_token_for_another_account_is_401(
        session: aiohttp.ClientSession, server: ManagerServer) -> None:
    tokens = TokenProvider(token_hex=server.account.delegate_token, account_id="other",
                           host_name="h", audience=server.url)
    async with session.get(f"{server.url}/api/agent/delegates/x/task-events",
                           headers={"Authorization": f"Delegate {tokens.get()}"}) as resp:
        assert resp.status == 401


async def test_garbage_token_is_401(session: aiohttp.ClientSession,
                                    server: ManagerServer) -> None:
    async with session.post(f"{server.url}/api/agent/delegates/heartbeat-with-polling",
                            headers={"Authorization": "Delegate not-a-jwe-secret123"},
                            json={}) as resp:
        text = await resp.text()
    assert resp.status == 401
    assert "not-a-jwe-secret123" not in text


async def test_stream_with_bad_token_is_refused_before_upgrade(
        session: aiohttp.ClientSession, server: ManagerServer,
        agent: Callable[..., Agent]) -> None:
    a = agent()
    await a.register()
    url = (f"{server.url}/stream/delegate/{server.account.account_id}"
           f"?delegateId={a.delegate_id}&token=bad-token-value")
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await session.ws_connect(url)
    assert info.value.status == 401


@pytest.mark.parametrize("auth", [None, "Bearer wrong-key", "Delegate x"])
async def test_setup_api_needs_the_api_key(session: aiohttp.ClientSession,
                                           server: ManagerServer, auth: str | None) -> None:
    headers: dict[str, Any] = {"Authorization": auth} if auth else {}
    async with session.get(f"{server.url}/api/setup/delegates", headers=headers) as resp:
        body = await resp.json()
    assert resp.status == 401
    assert server.account.api_key not in str(body)
