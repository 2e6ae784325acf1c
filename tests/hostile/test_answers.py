"""No answer stops the delegate: deep nesting, junk, wrong types, NUL bytes and floods of them.

Each probe is one bad answer or frame (or a flood of them) from a scripted manager; the delegate
must log it (rate-limited), skip it, stay alive and keep heartbeating.
"""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from tests.hostile.conftest import Delegates, still_serving
from tests.hostile.scripted import DELEGATE_ID, HostileManager, envelope
from tests.support import wait_until

pytestmark = pytest.mark.timeout(90)

DEEP = "[" * 100_000 + "]" * 100_000


def deep_object(key: str, depth: int = 100_000) -> str:
    return '{"' + key + '":' + "[" * depth + "]" * depth + "}"


#: frames a hostile manager may send on the stream, each a different kind of bad
BAD_FRAMES = [
    DEEP,
    deep_object("eventType"),
    '{"eventType":"DelegateTaskEvent","accountId":"hostileAcct01","delegateTaskId":'
    + "[" * 50_000 + "]" * 50_000 + "}",
    "not json at all",
    "\x00\x01\x02",
    "[]", "null", "42", '"DelegateTaskEvent"',
    '{"eventType": 5}',
    '{"eventType":"DelegateTaskEvent","accountId":"hostileAcct01","delegateTaskId":"a\\u0000b"}',
    '{"eventType":"DelegateTaskEvent","accountId":"hostileAcct01","delegateTaskId":'
    + json.dumps("x" * 5000) + "}",
    '{"eventType":"DelegateTaskEvent","accountId":{"x":1},"delegateTaskId":"t1"}',
    '{"eventType":"DelegateHeartbeatResponseStreaming","delegateId":"../x"}',
    '{"eventType":"DelegateHeartbeatResponseStreaming","delegateId":"' + DELEGATE_ID
    + '","sequenceNumber":"1[SEQ]2","delegateRandomToken":"a b"}',
    '{"eventType":"DelegateTaskAbortEvent","accountId":"hostileAcct01","delegateTaskId":null}',
    '{"eventType":"SomethingNew"}',
]


def test_every_bad_stream_frame_is_skipped(hostile: HostileManager,
                                            delegates: Delegates) -> None:
    proc = delegates.start()
    proc.wait_event("stream.connected")
    hostile.push(*BAD_FRAMES)
    still_serving(proc, hostile)
    assert proc.find("stream.bad_message"), proc.tail()
    assert not hostile.requests("acquire"), "a bad event led to an acquire"
    assert len(proc.find("stream.connected")) == 1, "a bad frame cost the connection"


def test_a_flood_of_junk_frames_is_logged_a_line_per_kind(hostile: HostileManager,
                                                          delegates: Delegates) -> None:
    proc = delegates.start()
    proc.wait_event("stream.connected")
    hostile.push(*(["junk"] * 20_000))
    hostile.push('{"eventType":"SomethingNew"}')
    still_serving(proc, hostile)
    bad = proc.find("stream.bad_message")
    assert 1 <= len(bad) <= 4, f"{len(bad)} lines for 20,000 junk frames"


def test_an_oversize_frame_costs_one_reconnect(hostile: HostileManager,
                                               delegates: Delegates) -> None:
    proc = delegates.start()
    proc.wait_event("stream.connected")
    hostile.push("x" * (1 << 20) + "x")  # over the delegate's frame limit (and the server's)
    still_serving(proc, hostile, beats=3)
    proc.wait_event("stream.lost")


@pytest.mark.parametrize("answer", ["heartbeat", "task-events"])
def test_bad_polling_answers_are_skipped(hostile: HostileManager, delegates: Delegates,
                                         answer: str) -> None:
    bodies = [DEEP.encode(), b'{"resource":' + DEEP.encode() + b"}", b"[]", b"\x00junk",
              b'{"resource":{"delegateTaskEvents":"nope","delegateId":5}}',
              b'{"resource":{"delegateTaskEvents":[{"eventType":"DelegateTaskEvent",'
              b'"accountId":"hostileAcct01","delegateTaskId":"../../x"}]}}']
    served = 0

    async def bad(_request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        return web.Response(body=bodies[served % len(bodies)], content_type="application/json")

    hostile.answers[answer] = bad
    proc = delegates.start(POLL_FOR_TASKS="true")
    proc.wait_event("manager.registered")
    wait_until(lambda: served > len(bodies) or not proc.alive(), 30, "every bad answer served")
    # the keep-alive (ECS) goes on even while every heartbeat or poll answer is bad
    still_serving(proc, hostile, beats=3)
    assert not hostile.requests("acquire")


def test_a_bad_register_answer_is_retried_not_fatal(hostile: HostileManager,
                                                    delegates: Delegates) -> None:
    count = 0

    async def bad_then_good(request: web.Request) -> web.Response:
        nonlocal count
        count += 1
        if count <= 3:
            return web.Response(body=[DEEP, '{"resource":{"delegateId":"../../x"}}',
                                      '{"resource":' + DEEP + "}"][count - 1].encode(),
                                content_type="application/json")
        return envelope({"delegateId": DELEGATE_ID})

    hostile.answers["register"] = bad_then_good
    proc = delegates.start()
    proc.wait_event("manager.registered", timeout=30)
    still_serving(proc, hostile)


@pytest.mark.parametrize("announce", [True, False])
def test_a_huge_heartbeat_answer_is_refused_unread(hostile: HostileManager,
                                                   delegates: Delegates, announce: bool) -> None:
    sent = 0

    async def huge(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        if announce:
            resp.content_length = 400 * 1024 * 1024
        await resp.prepare(request)
        chunk = b" " * (1 << 20)
        try:
            for _ in range(400):
                await resp.write(chunk)
                sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    hostile.answers["heartbeat"] = huge
    proc = delegates.start(POLL_FOR_TASKS="true")
    proc.wait_event("manager.registered")
    failed = proc.wait_event("heartbeat.failed", timeout=30)
    assert "limit" in failed["error"]
    still_serving(proc, hostile)
    # it stopped reading at the limit, it did not take the 400 MB
    assert sent < 64 * 1024 * 1024 * len(proc.find("heartbeat.failed")) + 1
