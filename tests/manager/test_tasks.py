"""Task dispatch, acquire, logs, results, expiry, abort and re-queueing over real HTTP/websockets."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.manager.conftest import Agent, ServerFactory, Setup

pytestmark = pytest.mark.timeout(30)


async def wait_status(setup: Setup, task_id: str, status: str, timeout: float = 5.0
                      ) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            task = await setup.task(task_id)
            if task["status"] == status:
                return task
            await asyncio.sleep(0.05)


async def next_event(ws: aiohttp.ClientWebSocketResponse, event_type: str) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            frame = json.loads((await ws.receive()).data)
            if frame["eventType"] == event_type:
                return frame  # type: ignore[no-any-return]


async def test_streaming_delegate_is_told_and_runs_a_task(agent: Callable[..., Agent],
                                                          setup: Setup) -> None:
    a = agent(tags=["blue"])
    await a.register()
    ws = await a.stream()
    try:
        task_id = await setup.submit(data={"script": "echo hi"}, selectors=["blue"])
        event = await next_event(ws, "DelegateTaskEvent")
        assert event["delegateTaskId"] == task_id
        assert event["taskType"] == "SHELL_SCRIPT"
        status, body = await a.acquire(task_id)
        assert status == 200, body
        pkg = body["resource"]
        assert pkg["delegateInstanceId"] == a.instance_id
        assert pkg["data"] == {"script": "echo hi"}
        lines = [{"seq": n, "ts": 1, "level": "INFO", "message": f"line {n}"} for n in range(3)]
        path = f"/api/agent/delegates/{a.delegate_id}/tasks/{task_id}/logs"
        assert (await a.call("POST", path, {"lines": lines}))[0] == 200
        assert (await a.call("POST", path, {"lines": lines[1:]}))[0] == 200  # sent again
        status, _ = await a.result(task_id, "SUCCEEDED", output="hi")
        assert status == 200
        task = await setup.task(task_id)
        assert task["status"] == "SUCCEEDED"
        assert task["result"]["output"] == "hi"
        assert [ln["message"] for ln in task["logLines"]] == ["line 0", "line 1", "line 2"]
        newer = await setup.call("GET", f"/api/setup/tasks/{task_id}?sinceSeq=1")
        assert [ln["seq"] for ln in newer["logLines"]] == [2]
    finally:
        await ws.close()


async def test_only_eligible_delegates_see_the_task(agent: Callable[..., Agent],
                                                    setup: Setup) -> None:
    blue = agent(tags=["blue"], delegate_type="SHELL_SCRIPT", host_name="b",
                 supportedTaskTypes=["SHELL_SCRIPT"])
    red = agent(tags=["red"], delegate_type="SHELL_SCRIPT", host_name="r")
    await blue.register()
    await red.register()
    task_id = await setup.submit(selectors=["blue"])
    assert [e["delegateTaskId"] for e in await blue.events()] == [task_id]
    assert await red.events() == []
    status, _body = await red.acquire(task_id)
    assert status == 409
    other = await setup.submit(task_type="HTTP")  # blue supports SHELL_SCRIPT only
    assert [e["delegateTaskId"] for e in await red.events()] == [other]
    assert other not in [e["delegateTaskId"] for e in await blue.events()]


@pytest.mark.timeout(60)
async def test_two_delegates_acquire_at_once_exactly_one_wins(agent: Callable[..., Agent],
                                                              setup: Setup) -> None:
    a, b = agent(), agent()
    await a.register()
    await b.register()
    for _ in range(50):
        task_id = await setup.submit()
        (sa, ba), (sb, bb) = await asyncio.gather(a.acquire(task_id), b.acquire(task_id))
        assert sorted([sa, sb]) == [200, 409], (ba, bb)
        loser = ba if sa == 409 else bb
        assert loser["responseMessages"][0]["code"] == "TASK_ALREADY_ACQUIRED"
        winner = a if sa == 200 else b
        assert (await setup.task(task_id))["delegateId"] == winner.delegate_id


async def test_a_repeated_result_is_applied_once(agent: Callable[..., Agent],
                                                 setup: Setup) -> None:
    a, b = agent(), agent()
    await a.register()
    await b.register()
    task_id = await setup.submit()
    assert (await a.acquire(task_id))[0] == 200
    status, first = await a.result(task_id, "SUCCEEDED", output="one")
    assert status == 200
    assert first["metaData"]["duplicate"] is False
    status, again = await a.result(task_id, "FAILED", errorMessage="late and different")
    assert status == 200
    assert again["metaData"]["duplicate"] is True
    task = await setup.task(task_id)
    assert task["status"] == "SUCCEEDED"
    assert task["result"]["output"] == "one"
    status, other = await b.result(task_id)
    assert status == 409
    assert other["responseMessages"][0]["code"] == "TASK_ALREADY_ACQUIRED"


async def test_result_with_a_status_that_does_not_fit_is_400(agent: Callable[..., Agent],
                                                             setup: Setup) -> None:
    a = agent()
    await a.register()
    task_id = await setup.submit()
    await a.acquire(task_id)
    status, body = await a.result(task_id, "SUCCEEDED", code="FAILED")
    assert status == 400
    assert "response.status" in body["responseMessages"][0]["message"]


async def test_queued_task_nobody_may_take_expires_with_the_reason(
        agent: Callable[..., Agent], setup: Setup) -> None:
    await agent(tags=["blue"]).register()
    task_id = await setup.submit(selectors=["green"], timeoutMs=200)
    task = await wait_status(setup, task_id, "EXPIRED")
    assert "no connected delegate matches selectors ['green']" in task["errorMessage"]
    status, _body = await agent().acquire(task_id)
    assert status in (404, 410)


async def test_abort_sends_the_abort_event(agent: Callable[..., Agent], setup: Setup) -> None:
    a = agent()
    await a.register()
    ws = await a.stream()
    try:
        task_id = await setup.submit()
        assert (await a.acquire(task_id))[0] == 200
        await setup.call("POST", f"/api/setup/tasks/{task_id}/abort")
        event = await next_event(ws, "DelegateTaskAbortEvent")
        assert event["delegateTaskId"] == task_id
        assert {"eventType": "DelegateTaskAbortEvent", "delegateTaskId": task_id,
                "accountId": a.account_id, "sync": False} in await a.events()
        assert (await setup.task(task_id))["status"] == "ABORTED"
        status, _body = await a.result(task_id, "ABORTED", code="FAILED", errorMessage="aborted")
        assert status == 200
        assert (await setup.task(task_id))["status"] == "ABORTED"
        assert await a.events() == []
    finally:
        await ws.close()


async def test_task_its_delegate_stops_listing_is_requeued_then_taken_by_another(
        start_server: ServerFactory, session: aiohttp.ClientSession) -> None:
    server = await start_server(task_orphan_s=0.3)
    setup = Setup(session, server)
    a, b = Agent(session, server), Agent(session, server)
    await a.register()
    await b.register()
    task_id = await setup.submit()
    assert (await a.acquire(task_id))[0] == 200
    await wait_status(setup, task_id, "QUEUED")  # a never listed it in a heartbeat
    assert (await b.acquire(task_id))[0] == 200
    assert (await setup.task(task_id))["delegateId"] == b.delegate_id


async def test_listed_task_stays_with_its_delegate(
        start_server: ServerFactory, session: aiohttp.ClientSession) -> None:
    server = await start_server(task_orphan_s=0.3)
    setup = Setup(session, server)
    a = Agent(session, server)
    await a.register()
    task_id = await setup.submit()
    assert (await a.acquire(task_id))[0] == 200
    for _ in range(8):
        await a.heartbeat(running=[task_id])
        await asyncio.sleep(0.1)
    assert (await setup.task(task_id))["status"] == "STARTED"


async def test_task_lost_without_requeue_fails(
        start_server: ServerFactory, session: aiohttp.ClientSession) -> None:
    server = await start_server(task_orphan_s=0.2)
    setup = Setup(session, server)
    a = Agent(session, server)
    await a.register()
    task_id = await setup.submit(requeueOnDelegateLoss=False)
    await a.acquire(task_id)
    task = await wait_status(setup, task_id, "FAILED")
    assert "delegate lost" in task["errorMessage"]


async def test_retry_on_other_delegate_excludes_the_first(agent: Callable[..., Agent],
                                                          setup: Setup) -> None:
    a, b = agent(), agent()
    await a.register()
    await b.register()
    task_id = await setup.submit()
    await a.acquire(task_id)
    status, _ = await a.result(task_id, "ERRORED", code="RETRY_ON_OTHER_DELEGATE")
    assert status == 200
    assert (await setup.task(task_id))["status"] == "QUEUED"
    assert task_id not in [e["delegateTaskId"] for e in await a.events()]
    assert (await a.acquire(task_id))[0] == 409
    assert (await b.acquire(task_id))[0] == 200


async def test_a_hand_back_excludes_the_process_not_the_delegate(agent: Callable[..., Agent],
                                                                 setup: Setup) -> None:
    a = agent()
    await a.register()
    task_id = await setup.submit()
    await a.acquire(task_id)
    status, _ = await a.result(task_id, "FAILED", code="RETRY_ON_OTHER_DELEGATE")
    assert status == 200
    assert (await a.acquire(task_id))[0] == 409, "not the process that handed it back"
    # the same delegate restarted: same id, a new process
    await a.register(delegateInstanceId=uuid.uuid4().hex)
    assert task_id in [e["delegateTaskId"] for e in await a.events()]
    assert (await a.acquire(task_id))[0] == 200


async def test_capability_checks_decide_who_runs_it(agent: Callable[..., Agent],
                                                    setup: Setup) -> None:
    a, b = agent(), agent()
    await a.register()
    await b.register()
    task_id = await setup.submit(capabilities=[{"capabilityType": "HTTP",
                                                "params": {"url": "http://x"}}])
    status, body = await a.acquire(task_id)
    assert status == 200
    assert body["resource"].get("delegateInstanceId") is None
    assert (await setup.task(task_id))["status"] == "VALIDATING"
    path = "/api/agent/delegates/{}/tasks/" + task_id + "/report"
    status, body = await a.call("POST", path.format(a.delegate_id), {
        "delegateInstanceId": a.instance_id,
        "results": [{"capabilityType": "HTTP", "ok": False, "message": "unreachable"}]})
    assert status == 422
    await b.acquire(task_id)
    status, body = await b.call("POST", path.format(b.delegate_id), {
        "delegateInstanceId": b.instance_id,
        "results": [{"capabilityType": "HTTP", "ok": True}]})
    assert status == 200
    assert body["resource"]["delegateInstanceId"] == b.instance_id
    assert (await setup.task(task_id))["status"] == "STARTED"


async def test_setup_api_rejects_bad_task_input(setup: Setup) -> None:
    await setup.call("POST", "/api/setup/tasks", {"data": {}}, expect=400)
    await setup.call("POST", "/api/setup/tasks", {"taskType": "X", "timeoutMs": -1}, expect=400)
    await setup.call("GET", "/api/setup/tasks?status=NOPE", expect=400)
    await setup.call("GET", "/api/setup/tasks/unknown", expect=404)
    listed = await setup.call("GET", "/api/setup/tasks?status=QUEUED")
    assert listed == {"tasks": []}


async def test_broadcast_reaches_ten_delegates_per_round(
        start_server: ServerFactory, session: aiohttp.ClientSession) -> None:
    server = await start_server(rebroadcast_s=2.0)
    setup = Setup(session, server)
    agents = [Agent(session, server) for _ in range(12)]
    sockets = []
    for a in agents:
        await a.register()
        sockets.append(await a.stream())
    try:
        task_id = await setup.submit()

        async def told(ws: aiohttp.ClientWebSocketResponse, within: float) -> bool:
            try:
                async with asyncio.timeout(within):
                    while True:
                        frame = json.loads((await ws.receive()).data)
                        if frame.get("delegateTaskId") == task_id:
                            return True
            except TimeoutError:
                return False

        first = await asyncio.gather(*(told(ws, 1.0) for ws in sockets))
        assert sum(first) == 10
        rest = [ws for ws, got in zip(sockets, first, strict=True) if not got]
        assert all(await asyncio.gather(*(told(ws, 5) for ws in rest)))  # the next round
    finally:
        for ws in sockets:
            await ws.close()


async def test_validation_without_a_passing_delegate_fails_with_the_reasons(
        start_server: ServerFactory, session: aiohttp.ClientSession) -> None:
    server = await start_server(validation_timeout_s=0.3)
    setup = Setup(session, server)
    a = Agent(session, server)
    await a.register()
    task_id = await setup.submit(capabilities=[{"capabilityType": "HTTP"}])
    await a.acquire(task_id)
    status, _ = await a.call(
        "POST", f"/api/agent/delegates/{a.delegate_id}/tasks/{task_id}/report",
        {"delegateInstanceId": a.instance_id,
         "results": [{"capabilityType": "HTTP", "ok": False, "message": "no route to x"}]})
    assert status == 422
    task = await wait_status(setup, task_id, "FAILED")
    assert "no route to x" in task["errorMessage"]
