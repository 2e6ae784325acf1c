"""Ids and URLs: a task id that is not an id never reaches a URL or a path; a package that does not
answer its offer is refused and reported; the manager's redirects are never followed."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from tests.hostile.conftest import Delegates, still_serving
from tests.hostile.scripted import ACCOUNT, HostileManager, envelope
from tests.support import wait_until

pytestmark = pytest.mark.timeout(90)

BAD_IDS = ["../../x", "q?x=1#f", "a\x00b", "a/b", "a b", "naïve", "x" * 5000, ".", "..", "",
           "%2e%2e", "a\nb"]


def offer(task_id: str) -> str:
    return json.dumps({"eventType": "DelegateTaskEvent", "accountId": ACCOUNT,
                       "delegateTaskId": task_id, "taskType": "SHELL_SCRIPT"})


def test_bad_task_ids_are_never_acquired(hostile: HostileManager, delegates: Delegates) -> None:
    proc = delegates.start()
    proc.wait_event("stream.connected")
    hostile.push(*(offer(i) for i in BAD_IDS))
    hostile.packages["good-1"] = {"delegateTaskId": "good-1", "accountId": ACCOUNT,
                                  "taskType": "NOOP", "data": {}}
    hostile.push(offer("good-1"))
    wait_until(lambda: hostile.requests("result"), 20, "the good task's result")
    still_serving(proc, hostile)
    paths = [s.raw_path for s in hostile.requests("acquire")]
    assert paths and all("/tasks/good-1/acquire?" in p for p in paths), paths
    assert {s.name for s in hostile.seen} <= {"register", "keepalive", "stream", "heartbeat",
                                              "acquire", "logs", "result", "profile"}
    assert len(proc.find("stream.bad_message")) >= 1


def test_bad_ids_in_a_polling_answer(hostile: HostileManager, delegates: Delegates) -> None:
    events = [{"eventType": "DelegateTaskEvent", "accountId": ACCOUNT, "delegateTaskId": i}
              for i in BAD_IDS]

    async def answer(_request: web.Request) -> web.Response:
        return envelope({"delegateTaskEvents": events})

    hostile.answers["task-events"] = answer
    proc = delegates.start(POLL_FOR_TASKS="true")
    proc.wait_event("task_events.failed", timeout=20)
    still_serving(proc, hostile)
    assert not hostile.requests("acquire")


@pytest.mark.parametrize(("field", "value"), [("delegateTaskId", "other-task"),
                                          ("accountId", "otherAccount"),
                                          ("delegateId", "otherDelegate")])
def test_a_package_for_another_task_or_account_is_refused_and_reported(
    hostile: HostileManager, delegates: Delegates, field: str, value: str
) -> None:
    marker = delegates.tmp / "d1" / "ran"
    package = {"delegateTaskId": "t-1", "accountId": ACCOUNT, "taskType": "SHELL_SCRIPT",
               "data": {"script": f"touch {marker}"}}
    hostile.packages["t-1"] = {**package, field: value}
    proc = delegates.start()
    proc.wait_event("stream.connected")
    hostile.push(offer("t-1"))
    result = wait_until(lambda: hostile.requests("result"), 20, "a result for t-1")[0]
    assert "/v2/tasks/t-1/delegates/" in result.raw_path
    body = json.loads(result.body)
    assert body["response"]["status"] == "ERRORED"
    assert "refused" in body["response"]["errorMessage"] and value in \
        body["response"]["errorMessage"]
    assert proc.find("task.package_refused")
    assert not marker.exists(), "the script of a mismatched package ran"
    still_serving(proc, hostile)


def mentions(event: dict[str, object], *words: str) -> bool:
    text = json.dumps(event)
    return all(w in text for w in words)


@pytest.mark.parametrize("status", [307, 308])
def test_redirects_are_not_followed(hostile: HostileManager, delegates: Delegates,
                                    status: int) -> None:
    with HostileManager() as elsewhere:
        async def redirect(request: web.Request) -> web.Response:
            return web.Response(status=status,
                                headers={"Location": elsewhere.url + request.path_qs})

        hostile.answers["register"] = redirect
        hostile.answers["stream"] = redirect
        hostile.answers["result"] = redirect
        hostile.packages["t-1"] = {"delegateTaskId": "t-1", "accountId": ACCOUNT,
                                   "taskType": "NOOP", "data": {}}
        proc = delegates.start()
        wait_until(lambda: [e for e in proc.events if mentions(e, str(status), "redirect")],
                   20, f"an error naming {status}")
        del hostile.answers["register"]
        proc.wait_event("manager.registered", timeout=40)
        before = len(proc.events)
        wait_until(lambda: [e for e in proc.events[before:] if mentions(e, str(status), "stream")],
                   20, "the stream refused")
        del hostile.answers["stream"]
        proc.wait_event("stream.connected", timeout=20)
        hostile.push(offer("t-1"))
        wait_until(lambda: len(hostile.requests("result")) >= 2, 20, "the result re-tried")
        still_serving(proc, hostile)
        assert elsewhere.seen == [], "a request followed the redirect"
