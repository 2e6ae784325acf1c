"""Floods: more offers than the delegate can take, scripts that print faster than the manager takes
their log. The delegate takes what its capacity allows, bounds what it holds, and says what it
dropped. (Peak memory under each flood is measured by `scripts/bench hostile`, not asserted here.)"""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from tests.hostile.conftest import Delegates, still_serving
from tests.hostile.scripted import ACCOUNT, HostileManager, envelope
from tests.support import wait_until

pytestmark = pytest.mark.timeout(120)


def test_twenty_thousand_offers_never_exceed_the_default_capacity(
    hostile: HostileManager, delegates: Delegates
) -> None:
    events = [{"eventType": "DelegateTaskEvent", "accountId": ACCOUNT,
               "delegateTaskId": f"flood-{i}"} for i in range(20_000)]
    served = 0
    acquiring = peak = 0

    async def offers(_request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        return envelope({"delegateTaskEvents": events if served <= 2 else []})

    async def slow_acquire(_request: web.Request) -> web.Response:
        nonlocal acquiring, peak
        acquiring += 1
        peak = max(peak, acquiring)
        try:
            await asyncio.sleep(0.5)
            return envelope(None, 409)
        finally:
            acquiring -= 1

    hostile.answers["task-events"] = offers
    hostile.answers["acquire"] = slow_acquire
    proc = delegates.start(POLL_FOR_TASKS="true")
    wait_until(lambda: served >= 3, 30, "the flood polled")
    still_serving(proc, hostile, beats=3)
    assert 1 <= peak <= 20, f"{peak} acquires at once"


def test_fast_scripts_against_a_slow_manager_lose_their_oldest_lines_and_say_so(
    hostile: HostileManager, delegates: Delegates
) -> None:
    async def slow_logs(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return envelope({})

    hostile.answers["logs"] = slow_logs
    script = "for i in $(seq 1 3000); do printf 'line %s %01000d\\n' $i 0; done"
    for n in range(3):
        hostile.packages[f"p-{n}"] = {"delegateTaskId": f"p-{n}", "accountId": ACCOUNT,
                                      "taskType": "SHELL_SCRIPT", "data": {"script": script}}
    proc = delegates.start()
    proc.wait_event("stream.connected")
    hostile.push(*(json.dumps({"eventType": "DelegateTaskEvent", "accountId": ACCOUNT,
                               "delegateTaskId": f"p-{n}"}) for n in range(3)))
    wait_until(lambda: len(hostile.requests("result")) >= 3, 90, "three results")
    for n in range(3):
        messages = [line["message"] for seen in hostile.requests("logs")
                    if f"/tasks/p-{n}/" in seen.raw_path
                    for line in json.loads(seen.body)["lines"]]
        assert any("log lines dropped" in m for m in messages), f"p-{n}: no truncation mark"
        assert any(m.startswith("line 3000 ") for m in messages), f"p-{n}: newest line lost"
    still_serving(proc, hostile)
