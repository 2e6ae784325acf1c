"""Registration, ECS sequence numbers, heartbeats and connected status, as a delegate sees them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiohttp
import pytest

from protocol.wire import MAX_TASK_DATA_BYTES
from tests.manager.conftest import Agent, ServerFactory, Setup

pytestmark = pytest.mark.timeout(20)


async def test_register_and_heartbeat_show_connected(agent: Callable[..., Agent],
                                                     setup: Setup) -> None:
    a = agent(delegateName="alpha", delegateGroupName="g1", tags=["blue"])
    await a.register()
    status, body = await a.heartbeat()
    assert status == 200
    assert body["resource"]["delegateId"] == a.delegate_id
    [d] = await setup.delegates()
    assert d["delegateId"] == a.delegate_id
    assert d["status"] == "CONNECTED"
    assert d["hostName"] == "Harness-ECS-Delegate_0"
    assert d["sequenceNum"] == 0
    assert d["tags"] == ["blue"]
    groups = (await setup.call("GET", "/api/setup/delegates"))["groups"]
    assert [g["groupName"] for g in groups] == ["g1"]


async def test_three_ecs_tasks_of_one_hostname_get_seq_0_1_2(
        agent: Callable[..., Agent], setup: Setup) -> None:
    answers = [await agent().register() for _ in range(3)]
    assert [a["sequenceNum"] for a in answers] == ["0", "1", "2"]
    assert len({a["delegateId"] for a in answers}) == 3
    hosts = sorted(d["hostName"] for d in await setup.delegates())
    assert hosts == [f"Harness-ECS-Delegate_{n}" for n in range(3)]


async def test_reregister_with_matching_seq_and_token_keeps_the_slot(
        agent: Callable[..., Agent]) -> None:
    a, b = agent(), agent()
    first = await a.register()
    await b.register()
    # a restarted process: same sequence file, no delegateId
    again = await agent(delegateRandomToken=first["delegateRandomToken"],
                        sequenceNum=first["sequenceNum"]).register()
    assert again["delegateId"] == first["delegateId"]
    assert again["sequenceNum"] == "0"


async def test_ecs_registration_without_token_is_400_naming_the_field(
        agent: Callable[..., Agent]) -> None:
    a = agent()
    a.params.pop("delegateRandomToken")
    status, body = await a.call("POST", "/api/agent/delegates/register", a.params)
    assert status == 400
    assert "delegateRandomToken" in body["responseMessages"][0]["message"]


async def test_stale_slot_is_reused_with_its_tags_and_description(
        start_server: ServerFactory, session: aiohttp.ClientSession) -> None:
    server = await start_server(ecs_stale_slot_s=0.2)
    old = Agent(session, server, tags=["east"], description="first task")
    first = await old.register()
    await asyncio.sleep(0.4)
    new = Agent(session, server)
    second = await new.register()
    assert second["sequenceNum"] == first["sequenceNum"] == "0"
    assert second["delegateId"] != first["delegateId"]
    assert second["delegateRandomToken"] == new.params["delegateRandomToken"]
    [d] = await Setup(session, server).delegates()
    assert d["delegateId"] == second["delegateId"]
    assert d["tags"] == ["east"]
    # the old task comes back: its slot is gone, so it gets a new one
    back = await old.register()
    assert back["sequenceNum"] == "1"


async def test_unregister_disconnects_and_frees_the_ecs_slot(
        agent: Callable[..., Agent], setup: Setup) -> None:
    a = agent()
    first = await a.register()
    status, _ = await a.call("POST", "/api/agent/delegates/unregister",
                             {"delegateId": a.delegate_id, "hostName": "Harness-ECS-Delegate"})
    assert status == 200
    [d] = await setup.delegates()
    assert d["status"] == "DISCONNECTED"
    reused = await agent().register()
    assert reused["sequenceNum"] == first["sequenceNum"]


async def test_non_ecs_delegate_is_found_again_by_hostname(agent: Callable[..., Agent]) -> None:
    first = await agent(host_name="box-1", delegate_type="SHELL_SCRIPT").register()
    again = await agent(host_name="box-1", delegate_type="SHELL_SCRIPT").register()
    other = await agent(host_name="box-2", delegate_type="SHELL_SCRIPT").register()
    assert again["delegateId"] == first["delegateId"]
    assert other["delegateId"] != first["delegateId"]
    assert first.get("sequenceNum") is None


async def test_heartbeat_of_unknown_delegate_is_404(agent: Callable[..., Agent]) -> None:
    a = agent(delegateId="nobody")
    status, body = await a.heartbeat()
    assert status == 404
    assert body["responseMessages"][0]["code"] == "DELEGATE_NOT_FOUND"


async def test_delegate_without_heartbeat_becomes_disconnected(
        start_server: ServerFactory, session: aiohttp.ClientSession) -> None:
    server = await start_server(disconnect_after_s=0.2)
    a = Agent(session, server)
    await a.register()
    setup = Setup(session, server)
    assert (await setup.delegates())[0]["status"] == "CONNECTED"
    await asyncio.sleep(0.4)
    assert (await setup.delegates())[0]["status"] == "DISCONNECTED"
    await a.heartbeat()
    assert (await setup.delegates())[0]["status"] == "CONNECTED"


async def test_bad_body_is_400_naming_the_field(agent: Callable[..., Agent]) -> None:
    a = agent()
    body = dict(a.params)
    del body["hostName"]
    status, answer = await a.call("POST", "/api/agent/delegates/register", body)
    assert status == 400
    assert answer["responseMessages"][0]["code"] == "INVALID_REQUEST"
    assert "hostName" in answer["responseMessages"][0]["message"]


async def test_body_over_the_limit_is_413(agent: Callable[..., Agent]) -> None:
    a = agent()
    await a.register()
    big = {**a.params, "description": "x" * (MAX_TASK_DATA_BYTES + 10)}
    status, answer = await a.call("POST", "/api/agent/delegates/register", big)
    assert status == 413
    assert answer["responseMessages"][0]["code"] == "PAYLOAD_TOO_LARGE"


async def test_stream_heartbeat_is_acknowledged(agent: Callable[..., Agent],
                                                setup: Setup) -> None:
    a = agent()
    reg = await a.register()
    ws = await a.stream()
    try:
        await ws.send_str(json.dumps({**a.params, "eventType": "DelegateHeartbeat"}))
        await ws.send_str(json.dumps({"eventType": "SomethingNew"}))  # ignored
        ack = json.loads((await ws.receive(timeout=5)).data)
        assert ack["eventType"] == "DelegateHeartbeatResponseStreaming"
        assert ack["delegateId"] == a.delegate_id
        assert ack["sequenceNumber"] == reg["sequenceNum"]
        assert ack["delegateRandomToken"] == reg["delegateRandomToken"]
        assert ack["responseSentAt"] > 0
    finally:
        await ws.close()


async def test_watcher_version_is_stored_updated_and_kept_across_a_restart(
        start_server: ServerFactory, session: aiohttp.ClientSession) -> None:
    server = await start_server()
    watched = Agent(session, server, delegateName="watched", watcherVersion="1.0.0")
    alone = Agent(session, server, delegateName="alone")  # run without a watcher: none
    await watched.register()
    await alone.register()
    setup = Setup(session, server)
    versions = {d["delegateName"]: d.get("watcherVersion") for d in await setup.delegates()}
    assert versions == {"watched": "1.0.0", "alone": None}
    # its watcher upgraded itself: the next heartbeat says so
    watched.params["watcherVersion"] = "2.0.0"
    status, _ = await watched.heartbeat()
    assert status == 200
    await server.stop()
    again = await start_server(data_dir=server.settings.data_dir)  # same database
    versions = {d["delegateName"]: d.get("watcherVersion")
                for d in await Setup(session, again).delegates()}
    assert versions == {"watched": "2.0.0", "alone": None}
    bad = Agent(session, again, watcherVersion="1.0 <script>")
    status, body = await bad.call("POST", "/api/agent/delegates/register", bad.params)
    assert status == 400
    assert "watcherVersion" in body["responseMessages"][0]["message"]
