"""Staying connected: registration, the ECS keep-alive, heartbeats, and the stream or polling.

`Connection.run()` registers (retrying forever with jittered backoff, obeying SELF_DESTRUCT), then
keeps the delegate visible to the manager until cancelled: over a websocket that carries heartbeats
and task events (POLL_FOR_TASKS=false), or by HTTP heartbeats and task-event polling. Whatever the
manager does (restart, outage, forget us), the loop comes back as the same delegate: the delegate id
and the ECS (sequence, token) pair are kept and re-sent.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import aiohttp
from pydantic import ValidationError

from delegate import __version__, log, retry
from delegate.client import ManagerClient
from delegate.config import Settings
from delegate.errors import (
    AuthRejected,
    DelegateError,
    ManagerRejected,
    ManagerUnavailable,
    ProtocolViolation,
    SelfDestruct,
    TransientError,
)
from delegate.metrics import Metrics
from delegate.sequence import SequenceConfig, SequenceFile
from protocol import wire

_log = log.get("delegate.connection")

TaskEvent = wire.DelegateTaskEvent | wire.DelegateTaskAbortEvent

#: keep re-registering through outages and wrong tokens, but never faster than the backoff allows
REGISTER_POLICY = retry.RetryPolicy(
    initial_s=0.25, max_backoff_s=30.0, max_attempts=None, max_total_s=None,
    retry_on=(TransientError, AuthRejected, ManagerRejected),
)


class EventSink(Protocol):
    """Where task events go (the task runner). Must return quickly: it only schedules work."""

    def on_events(self, events: Sequence[TaskEvent], source: str) -> None: ...


class Connection:
    def __init__(
        self,
        settings: Settings,
        client: ManagerClient,
        metrics: Metrics,
        *,
        instance_id: str,
        supported_task_types: Callable[[], list[str]],
        executing: Callable[[], list[str]],
        sink: EventSink | None = None,
    ) -> None:
        self._s = settings
        self._client = client
        self._metrics = metrics
        self._instance_id = instance_id
        self._supported = supported_task_types
        self._executing = executing
        self.sink = sink
        self._seqfile = SequenceFile(settings.sequence_file) if settings.is_ecs else None
        self._seq: SequenceConfig | None = None
        self.registered = asyncio.Event()
        self.last_ack_monotonic: float | None = None
        self.last_error: str | None = None
        self._needs_register = True
        self._ip = _local_ip()

    # --- identity ------------------------------------------------------------------------------

    @property
    def delegate_id(self) -> str | None:
        return self._client.delegate_id

    def params(self, *, keep_alive: bool = False) -> wire.DelegateParams:
        s = self._s
        seq = self._seq
        return wire.DelegateParams(
            delegate_id=self._client.delegate_id,
            account_id=s.account_id,
            ip=self._ip,
            host_name=s.hostname,
            delegate_name=s.delegate_name,
            delegate_group_name=s.delegate_group_name,
            delegate_group_id=s.delegate_group_id,
            delegate_profile_id=s.delegate_profile,
            description=s.delegate_description,
            version=__version__,
            delegate_type=s.delegate_type,
            delegate_random_token=seq.random_token if seq else None,
            sequence_num=seq.sequence_num if seq else None,
            last_heart_beat=int(time.time() * 1000),
            keep_alive_packet=keep_alive,
            polling_mode_enabled=s.poll_for_tasks,
            tags=list(s.delegate_tags),
            supported_task_types=self._supported(),
            currently_executing_delegate_tasks=self._executing(),
            delegate_instance_id=self._instance_id,
        )

    def healthy(self) -> tuple[bool, str]:
        """(ok, reason) for /health: registered and a heartbeat acknowledged recently."""
        if not self.registered.is_set():
            return False, f"not registered: {self.last_error or 'registering'}"
        if self.last_ack_monotonic is None:
            return False, "registered, no heartbeat acknowledged yet"
        age = time.monotonic() - self.last_ack_monotonic
        if age > self._s.delegate_heartbeat_stale_s:
            return False, f"last heartbeat acknowledged {age:.0f}s ago: {self.last_error or ''}"
        return True, "ok"

    def _acked(self) -> None:
        self.last_ack_monotonic = time.monotonic()
        self.last_error = None
        self._metrics.connected.set(1)

    def _failed(self, error: str) -> None:
        self.last_error = error
        ok, _ = self.healthy()
        self._metrics.connected.set(1 if ok else 0)

    # --- registration --------------------------------------------------------------------------

    async def register(self, *, keep_alive: bool = False) -> None:
        if self._seqfile is not None and self._seq is None:
            self._seq = await asyncio.to_thread(self._seqfile.load_or_create)
        answer = await self._client.register(self.params(keep_alive=keep_alive))
        if answer.action == wire.RegisterAction.SELF_DESTRUCT:
            raise SelfDestruct("the manager told this delegate to self-destruct")
        first = self._client.delegate_id is None or self._needs_register
        if self._client.delegate_id and answer.delegate_id != self._client.delegate_id:
            _log.warning(
                "manager.identity_changed", old=self._client.delegate_id, new=answer.delegate_id
            )
        self._client.delegate_id = answer.delegate_id
        await self._store_sequence(answer.delegate_random_token, answer.sequence_num)
        self._needs_register = False
        self._metrics.registrations.inc()
        self._acked()
        if first:
            _log.info(
                "manager.registered",
                delegate_id=answer.delegate_id,
                sequence_num=answer.sequence_num,
                keep_alive=keep_alive,
            )
        self.registered.set()

    async def _store_sequence(self, token: str | None, seq: str | None) -> None:
        if self._seqfile is None or (token is None and seq is None):
            return
        self._seq = await asyncio.to_thread(self._seqfile.update, token, seq)

    async def _register_until_done(self) -> None:
        async def attempt() -> None:
            try:
                await self.register()
            except AuthRejected as exc:
                self._failed(str(exc))
                _log.error("manager.auth_rejected", error=str(exc))
                raise
            except DelegateError as exc:
                self._failed(str(exc))
                raise

        await retry.call("register", attempt, REGISTER_POLICY)

    async def unregister(self) -> None:
        if self._client.delegate_id is None:
            return
        request = wire.DelegateUnregisterRequest(
            delegate_id=self._client.delegate_id,
            host_name=self._s.hostname,
            delegate_group_name=self._s.delegate_group_name,
            delegate_instance_id=self._instance_id,
        )
        await self._client.unregister(request)
        self.registered.clear()
        self._metrics.connected.set(0)
        _log.info("manager.unregistered", delegate_id=self._client.delegate_id)

    # --- the loops -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Register, then stay connected until cancelled. Raises SelfDestruct if told to go."""
        await self._register_until_done()
        loops: list[Awaitable[None]] = []
        if self._s.poll_for_tasks:
            loops += [self._heartbeat_polling(), self._poll_task_events()]
        else:
            loops.append(self._stream())
        if self._s.is_ecs:
            loops.append(self._keep_alive())
        async with asyncio.TaskGroup() as group:
            for i, loop in enumerate(loops):
                group.create_task(loop, name=f"connection.loop{i}")  # type: ignore[arg-type]

    async def _ensure_registered(self) -> None:
        if self._needs_register:
            await self._register_until_done()

    async def _keep_alive(self) -> None:
        """ECS: re-send DelegateParams with keepAlivePacket=true so the slot never goes stale."""
        while True:
            await asyncio.sleep(self._s.delegate_keepalive_interval_s)
            try:
                await self._ensure_registered()
                await self.register(keep_alive=True)
            except SelfDestruct:
                raise
            except DelegateError as exc:
                self._failed(str(exc))
                _log.warning("keepalive.failed", error=str(exc))

    async def _heartbeat_polling(self) -> None:
        due = time.monotonic()
        while True:
            now = time.monotonic()
            self._metrics.heartbeat_delay.observe(max(now - due, 0.0))
            due = now + self._s.delegate_heartbeat_interval_s
            try:
                await self._ensure_registered()
                self._metrics.heartbeats_sent.inc()
                answer = await self._client.heartbeat(self.params())
                await self._store_sequence(answer.delegate_random_token, answer.sequence_number)
                self._acked()
            except ManagerRejected as exc:
                self._metrics.heartbeats_failed.inc()
                self._failed(str(exc))
                if exc.status == 404:
                    _log.warning("heartbeat.unknown_delegate", error=str(exc))
                    self._needs_register = True
                    continue
                _log.warning("heartbeat.failed", error=str(exc))
            except DelegateError as exc:
                self._metrics.heartbeats_failed.inc()
                self._failed(str(exc))
                _log.warning("heartbeat.failed", error=str(exc))
            await asyncio.sleep(max(due - time.monotonic(), 0.0))

    async def _poll_task_events(self) -> None:
        interval = self._s.delegate_poll_interval_s
        while True:
            try:
                await self._ensure_registered()
                answer = await self._client.task_events()
                if answer.delegate_task_events and self.sink is not None:
                    self.sink.on_events(answer.delegate_task_events, "poll")
            except DelegateError as exc:
                _log.warning("task_events.failed", error=str(exc))
            # a little jitter so that a fleet of pollers does not beat in step
            await asyncio.sleep(interval * random.uniform(0.9, 1.0))

    async def poll_once(self) -> None:
        """Catch up on queued work (a streaming delegate calls this when it frees capacity)."""
        if self._needs_register or self._client.delegate_id is None:
            return
        try:
            answer = await self._client.task_events()
        except DelegateError as exc:
            _log.debug("task_events.failed", error=str(exc))
            return
        if answer.delegate_task_events and self.sink is not None:
            self.sink.on_events(answer.delegate_task_events, "catch-up")

    async def _stream(self) -> None:
        losses = 0
        while True:
            await self._ensure_registered()
            try:
                ws = await self._client.open_stream(
                    sequence_num=self._seq.sequence_num if self._seq else None,
                    random_token=self._seq.random_token if self._seq else None,
                    heartbeat_s=max(self._s.delegate_heartbeat_interval_s, 5.0),
                )
            except ManagerRejected as exc:
                if exc.status == 404:
                    self._needs_register = True
                losses += 1
                await self._backoff("stream.connect_failed", exc, losses)
                continue
            except ManagerUnavailable as exc:
                losses += 1
                await self._backoff("stream.connect_failed", exc, losses)
                continue
            if losses:
                self._metrics.reconnects.inc()
            _log.info("stream.connected", delegate_id=self._client.delegate_id, reconnect=losses > 0)
            losses = 0
            reason = await self._stream_session(ws)
            losses = 1
            self._failed(f"stream lost: {reason}")
            _log.warning("stream.lost", reason=reason)
            await self._backoff("stream.reconnecting", None, losses)

    async def _backoff(self, event: str, exc: BaseException | None, attempt: int) -> None:
        delay = REGISTER_POLICY.backoff(attempt)
        if attempt == 1:
            delay = min(delay, 1.0)  # first retry within a second
        if exc is not None:
            self._failed(str(exc))
        _log.warning(event, attempt=attempt, wait_s=round(delay, 2),
                     error=str(exc) if exc else None)
        await asyncio.sleep(delay)

    async def _stream_session(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        """Heartbeat over `ws` and hand events to the sink until the socket ends; says why."""
        sender = asyncio.create_task(self._stream_heartbeats(ws), name="stream.heartbeats")
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self._on_stream_text(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    return f"socket error {ws.exception()!r}"
            if sender.done() and not sender.cancelled() and sender.exception():
                return f"heartbeat sender failed: {sender.exception()}"
            return f"closed by manager (code {ws.close_code})"
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            await ws.close()

    async def _stream_heartbeats(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        interval = self._s.delegate_heartbeat_interval_s
        due = time.monotonic()
        while True:
            sent_at = time.monotonic()
            self._metrics.heartbeat_delay.observe(max(sent_at - due, 0.0))
            due = sent_at + interval
            beat = wire.StreamHeartbeat(**self.params().model_dump())
            try:
                await ws.send_str(json.dumps(beat.dump(), separators=(",", ":")))
                self._metrics.heartbeats_sent.inc()
            except (ConnectionError, RuntimeError) as exc:
                self._metrics.heartbeats_failed.inc()
                await ws.close()
                raise ManagerUnavailable(f"heartbeat could not be sent: {exc}") from exc
            await asyncio.sleep(max(due - time.monotonic(), 0.0))
            last = self.last_ack_monotonic or 0.0
            if last < sent_at:
                # No ack for a whole interval: count it; after 3 missing, drop and reconnect.
                self._metrics.heartbeats_failed.inc()
                if time.monotonic() - last > 3 * interval:
                    _log.warning("heartbeat.unanswered", seconds=round(time.monotonic() - last, 1))
                    await ws.close()
                    return

    def _on_stream_text(self, data: str) -> None:
        try:
            message: Any = json.loads(data)
            kind = message.get("eventType") if isinstance(message, dict) else None
        except ValueError:
            _log.warning("stream.bad_message", reason="not JSON", first_bytes=data[:60])
            return
        try:
            if kind == wire.StreamEventType.HEARTBEAT_RESPONSE:
                ack = wire.DelegateHeartbeatResponseStreaming.model_validate(message)
                self._acked()
                if ack.delegate_random_token or ack.sequence_number:
                    asyncio.get_running_loop().create_task(
                        self._store_sequence(ack.delegate_random_token, ack.sequence_number),
                        name="sequence.store",
                    )
            elif kind == wire.StreamEventType.TASK:
                event = wire.DelegateTaskEvent.model_validate(message)
                if self.sink is not None:
                    self.sink.on_events([event], "stream")
            elif kind == wire.StreamEventType.TASK_ABORT:
                abort = wire.DelegateTaskAbortEvent.model_validate(message)
                if self.sink is not None:
                    self.sink.on_events([abort], "stream")
            elif kind == wire.StreamEventType.SELF_DESTRUCT:
                raise SelfDestruct("the manager sent SelfDestruct on the stream")
            else:
                _log.warning("stream.unknown_event", event_type=str(kind))
        except ValidationError as exc:
            first = exc.errors(include_input=False, include_url=False)[0]
            _log.warning(
                "stream.bad_message",
                event_type=str(kind),
                reason=f"{'.'.join(map(str, first.get('loc', ())))}: {first.get('msg')}",
            )


def _local_ip() -> str:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("127.0.0.1", 9))
            return str(probe.getsockname()[0])
    except OSError:
        return ""


__all__ = ["Connection", "EventSink", "ProtocolViolation", "TaskEvent"]
