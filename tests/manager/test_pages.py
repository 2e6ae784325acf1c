"""The HTML pages: groups that open and close; disconnected ECS delegates drop out."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.manager.conftest import Agent, ServerFactory, Setup, login

pytestmark = pytest.mark.timeout(20)


async def test_delegates_page_groups_and_drops_silent_ecs_delegates(
        start_server: ServerFactory, session: aiohttp.ClientSession) -> None:
    server = await start_server(disconnect_after_s=0.3)
    quiet = Agent(session, server, delegateName="quiet", delegateGroupName="grp-a")
    await quiet.register()
    await asyncio.sleep(0.5)
    live = Agent(session, server, delegateName="live", delegateGroupName="grp-a")
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
