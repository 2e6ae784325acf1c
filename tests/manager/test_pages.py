"""The HTML pages: groups that open and close; disconnected ECS delegates drop out."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.manager.conftest import Agent, ServerFactory, Setup, login
from tests.support import Manager, start_delegate, wait_until

pytestmark = pytest.mark.timeout(60)


async def test_delegates_page_groups_and_drops_silent_ecs_delegates(
        start_server: ServerFactory, session: aiohttp.ClientSession) -> None:
    server = await start_server(disconnect_after_s=0.3)
    quiet = Agent(session, server, delegateName="quiet", delegateGroupName="grp-a")
    await quiet.register()
    await asyncio.sleep(0.5)
    live = Agent(session, server, delegateName="live", delegateGroupName="grp-a",
                 watcherVersion="1.0.7")
    await live.register()
    await login(session, server)
    async with session.get(server.url + "/ui/delegates") as resp:
        page = await resp.text()
    assert resp.status == 200
    assert "<details" in page
    assert "<summary>grp-a" in page
    assert "Harness-ECS-Delegate_1" in page
    assert "CONNECTED" in page
    assert "Harness-ECS-Delegate_0" not in page
    assert "<th>watcher</th>" in page and "<td>1.0.7</td>" in page  # the watcher's version
    assert "Log out" in page


async def test_task_pages_list_and_show(server: object, session: aiohttp.ClientSession,
                                        setup: Setup) -> None:
    task_id = await setup.submit(data={"script": "echo <b>"})
    await login(session, setup.server)
    async with session.get(setup.server.url + "/ui/tasks") as resp:
        assert task_id in await resp.text()
    async with session.get(f"{setup.server.url}/ui/tasks/{task_id}") as resp:
        page = await resp.text()
    assert resp.status == 200
    assert "QUEUED" in page
    assert "fetch(" in page
    async with session.get(f"{setup.server.url}/ui/tasks/{task_id}/poll?sinceSeq=-1") as resp:
        assert (await resp.json())["status"] == "QUEUED"


async def test_a_group_whose_delegates_left_says_so_and_rows_name_them(
        start_server: ServerFactory, session: aiohttp.ClientSession) -> None:
    server = await start_server()
    gone = Agent(session, server, host_name="gone-host", delegateGroupName="grp-gone")
    await gone.register()
    await gone.call("POST", "/api/agent/delegates/unregister",
                    {"delegateId": gone.delegate_id, "hostName": "gone-host"})
    here = Agent(session, server, delegateGroupName="grp-here", ip="10.0.0.7")
    await here.register()
    await login(session, server)
    async with session.get(server.url + "/ui/delegates") as resp:
        page = await resp.text()
    assert "No delegate left in this group (1 disconnected)" in page
    assert "No delegates yet" not in page
    row = page.split("<summary>grp-here", 1)[1]
    for shown in ("Harness-ECS-Delegate_", "10.0.0.7", "Connected", "streaming", "s ago",
                  "default"):  # name (host when unnamed), IP, status, mode, age, token name
        assert shown in row, shown


async def test_a_closed_stream_shows_disconnected_within_seconds(
        start_server: ServerFactory, session: aiohttp.ClientSession, setup: Setup) -> None:
    server = setup.server
    a = Agent(session, server, delegateGroupName="live")
    await a.register()
    ws = await a.stream()
    await asyncio.sleep(0.3)
    await ws.close()
    for _ in range(100):
        if (await setup.delegates())[0]["status"] == "DISCONNECTED":
            break
        await asyncio.sleep(0.1)
    assert (await setup.delegates())[0]["status"] == "DISCONNECTED"


async def test_tasks_page_shows_the_host_and_filters(agent: Callable[..., Agent], setup: Setup,
                                                     session: aiohttp.ClientSession) -> None:
    a = agent(host_name="runner-host", delegateType="SHELL_SCRIPT", delegateGroupName="g1")
    await a.register()
    taken = await setup.submit(delegateGroupName="g1")
    assert (await a.acquire(taken))[0] == 200
    queued = await setup.submit()
    await login(session, setup.server)
    async with session.get(setup.server.url + "/ui/tasks?status=STARTED") as resp:
        page = await resp.text()
    assert taken in page and queued not in page and "runner-host" in page
    async with session.get(setup.server.url + "/ui/tasks?group=g1") as resp:
        page = await resp.text()
    assert taken in page and queued not in page


def test_a_sigkilled_streaming_delegate_is_disconnected_within_seconds(tmp_path: Path) -> None:
    with Manager(tmp_path / "m", "--tick-s", "0.2", tls=True) as manager:
        delegate = start_delegate(manager, tmp_path / "d", DELEGATE_GROUP_NAME="killed")
        try:
            wait_until(lambda: manager.delegate(status="CONNECTED", streaming=True), 30,
                       f"delegate streaming ({delegate.tail()})")
            delegate.send(signal.SIGKILL)
            delegate.wait(10)
            killed_at = time.monotonic()
            wait_until(lambda: manager.delegate(status="DISCONNECTED"), 15, "DISCONNECTED")
            assert time.monotonic() - killed_at < 10  # not the 5 minutes of the heartbeat window
            with manager.login().open(f"{manager.url}/ui/delegates", timeout=10) as resp:
                page = resp.read().decode()
            assert "No delegate left in this group (1 disconnected)" in page
        finally:
            delegate.stop()
