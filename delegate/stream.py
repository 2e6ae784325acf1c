"""POLL_FOR_TASKS=false: one websocket carries heartbeats up and task events down.

The socket is (re)opened under `STREAM_POLICY`: full jitter capped at 1 s, so a delegate is back
within about a second of the manager coming back, and gives up (the agent exits 1 for a restart)
only after `max_total_s` of failures in a row. Three heartbeat intervals without an ack drop the
socket. A streaming delegate that refused offers while full asks for queued work once it has room.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Coroutine
from typing import Any

import aiohttp
from pydantic import ValidationError

from delegate import log, retry
from delegate.errors import (
    DelegateError,
    ManagerRejected,
    ManagerUnavailable,
    SelfDestruct,
    Superseded,
    TokenRevoked,
    TransientError,
)
from delegate.polling import Link, fetch_events
from delegate.ratelog import RateLimitedLog
from protocol import wire

_log = log.get("delegate.stream")

STREAM_POLICY = retry.RetryPolicy(
    initial_s=0.25, max_backoff_s=1.0, max_attempts=None, max_total_s=900.0,
    retry_on=(TransientError, ManagerRejected),
)


#: the real manager's plain-string stream messages (also accepted as a JSON `eventType`)
MANAGER_WORDS = ("REVOKED_TOKEN", "EXPIRED_TOKEN", "INVALID_TOKEN", "SELF_DESTRUCT", "MIGRATE")


def manager_says(word: str, delegate_id: str | None) -> None:
    """Act on a plain-string message: raise what ends the delegate, or log and go on."""
    if word in ("REVOKED_TOKEN", "EXPIRED_TOKEN"):
        raise TokenRevoked(f"the manager sent {word} on the stream: install a new delegate token "
                           "(DELEGATE_TOKEN) and start a new task")
    if word == "INVALID_TOKEN":
        raise SelfDestruct("the manager sent INVALID_TOKEN on the stream")
    if word.startswith("SELF_DESTRUCT"):
        target = word[len("SELF_DESTRUCT"):]
        if not target or target == delegate_id:
            raise SelfDestruct(f"the manager sent {word} on the stream")
        _log.info("stream.self_destruct_for_another", target=target[:64])
        return
    if word.startswith("MIGRATE"):
        # not acted on yet (docs/protocol.md): this delegate keeps its manager
        _log.warning("stream.migrate_ignored", url=word[len("MIGRATE"):][:200])
        return
    _log.warning("stream.unknown_message", first_bytes=word[:60])


class Stream(Link):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bad = RateLimitedLog(_log)

    def loops(self) -> dict[str, Coroutine[Any, Any, None]]:
        return {"stream": self.run(), "catch_up": self.catch_up()}

    async def run(self) -> None:
        losses = 0  # sessions in a row that ended before they were worth having
        while True:
            ws = await retry.call("stream.connect", self._connect, STREAM_POLICY)
            if losses:
                self._metrics.reconnects.inc()
            _log.info("stream.connected", delegate_id=self._registrar.registration.delegate_id,
                      reconnect=losses > 0)
            opened = time.monotonic()
            reason = await self._session(ws)
            self._liveness.failed(f"stream lost: {reason}")
            lasted_s = time.monotonic() - opened
            losses = 1 if lasted_s > 3 * self._s.delegate_heartbeat_interval_s else losses + 1
            delay = STREAM_POLICY.backoff(losses)  # a socket closed at once is not a spin
            _log.warning("stream.lost", reason=reason, wait_s=round(delay, 2))
            await asyncio.sleep(delay)

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        delegate_id = await self._registrar.ensure()
        seq = self._registrar.seq
        try:
            return await self._client.open_stream(
                delegate_id,
                sequence_num=seq.sequence_num if seq else None,
                random_token=seq.random_token if seq else None,
                heartbeat_s=max(self._s.delegate_heartbeat_interval_s, 5.0),
            )
        except ManagerRejected as exc:
            if exc.status == 404 or exc.code == "DELEGATE_CONNECTION_INVALID":
                self._registrar.forgotten()
            self._liveness.failed(str(exc))
            if exc.code == "DELEGATE_SUPERSEDED":
                raise Superseded(str(exc)) from None
            raise
        except DelegateError as exc:
            self._liveness.failed(str(exc))
            raise

    async def catch_up(self) -> None:
        """Each time the sink has room after refusing offers, fetch what is queued for us."""
        while True:
            await self._sink.work_wanted.wait()
            self._sink.work_wanted.clear()
            delegate_id = self._registrar.registration.delegate_id
            if delegate_id is None:
                continue
            try:
                await fetch_events(self._client, delegate_id, self._sink, "catch-up")
            except DelegateError as exc:
                _log.debug("task_events.failed", error=str(exc))

    async def _session(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        """Heartbeat over `ws` and hand events to the sink until the socket ends; says why."""
        sender = asyncio.create_task(self._heartbeats(ws), name="stream.heartbeats")
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self._on_text(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    return f"socket error {ws.exception()!r}"
            if sender.done() and not sender.cancelled() and sender.exception():
                return f"heartbeat sender failed: {sender.exception()}"
            return f"closed by manager (code {ws.close_code})"
        finally:
            sender.cancel()
            await asyncio.gather(sender, *self._background, return_exceptions=True)
            await ws.close()

    async def _heartbeats(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        interval = self._s.delegate_heartbeat_interval_s
        due = time.monotonic()
        while True:
            sent_at = time.monotonic()
            self._metrics.heartbeat_delay.observe(max(sent_at - due, 0.0))
            due = sent_at + interval
            beat = wire.StreamHeartbeat(**self._registrar.params().model_dump())
            try:
                await ws.send_str(json.dumps(beat.dump(), separators=(",", ":")))
                self._metrics.heartbeats_sent.inc()
            except (ConnectionError, RuntimeError) as exc:
                self._metrics.heartbeats_failed.inc()
                await ws.close()
                raise ManagerUnavailable(f"heartbeat could not be sent: {exc}") from exc
            await asyncio.sleep(max(due - time.monotonic(), 0.0))
            last = self._liveness.last_ack_monotonic or 0.0
            if last < sent_at:
                # No ack for a whole interval: count it; after 3 missing, drop and reconnect.
                self._metrics.heartbeats_failed.inc()
                if time.monotonic() - last > 3 * interval:
                    _log.warning("heartbeat.unanswered", seconds=round(time.monotonic() - last, 1))
                    await ws.close()
                    return

    def _on_text(self, data: str) -> None:
        """One frame: a manager word, or JSON decoded defensively; a bad one is logged (a line
        per kind per interval, with a count) and skipped: no frame ends the session."""
        word = data.strip()
        if data[:1] != "{" and word.startswith(MANAGER_WORDS):
            manager_says(word, self._registrar.registration.delegate_id)
            return
        try:
            message: Any = wire.parse_json(data)
        except ValueError as exc:
            self._bad.warning("stream.bad_message", "not JSON", error=str(exc)[:80],
                              first_bytes=data[:40])
            return
        kind = message.get("eventType") if isinstance(message, dict) else None
        try:
            self._dispatch(kind, message)
        except ValidationError as exc:
            first = exc.errors(include_input=False, include_url=False)[0]
            where = ".".join(map(str, first.get("loc", ())))
            self._bad.warning("stream.bad_message", f"{str(kind)[:40]}: {where}",
                              reason=f"{where}: {first.get('msg')}")

    def _dispatch(self, kind: object, message: Any) -> None:
        if kind == wire.StreamEventType.HEARTBEAT_RESPONSE:
            ack = wire.DelegateHeartbeatResponseStreaming.model_validate(message)
            if ack.status == wire.DelegateStatus.DELETED:
                raise SelfDestruct("the manager acknowledged a heartbeat with status DELETED")
            self._liveness.acked()
            if ack.delegate_random_token or ack.sequence_number:
                task = asyncio.get_running_loop().create_task(
                    self._registrar.store_sequence(ack.delegate_random_token, ack.sequence_number),
                    name="sequence.store")
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        elif kind == wire.StreamEventType.TASK:
            self._sink.on_events([wire.DelegateTaskEvent.model_validate(message)], "stream")
        elif kind == wire.StreamEventType.TASK_ABORT:
            self._sink.on_events([wire.DelegateTaskAbortEvent.model_validate(message)], "stream")
        elif kind == wire.StreamEventType.SELF_DESTRUCT:
            raise SelfDestruct("the manager sent SelfDestruct on the stream")
        elif kind == wire.StreamEventType.SUPERSEDED:
            raise Superseded("another process registered as this delegate")
        elif isinstance(kind, str) and kind in MANAGER_WORDS:
            manager_says(kind, self._registrar.registration.delegate_id)
        else:
            self._bad.warning("stream.bad_message", "unknown event type",
                              event_type=str(kind)[:60])
