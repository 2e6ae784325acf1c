"""POLL_FOR_TASKS=true: heartbeats over HTTP, and task events fetched every poll interval.

Also `fetch_events`, which a streaming delegate uses to catch up on queued work once it has room.
Whatever fails, the loops go on; only SELF_DESTRUCT (in a registration answer, or a heartbeat that
says the delegate was DELETED) ends them, so that a polling delegate goes away like a streaming one.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol

from delegate import log
from delegate.client import ManagerClient
from delegate.config import Settings
from delegate.errors import (
    DelegateError,
    ManagerRejected,
    SelfDestruct,
    Superseded,
    TokenRevoked,
)
from delegate.liveness import Liveness
from delegate.metrics import Metrics
from delegate.registration import Registrar
from protocol import wire

_log = log.get("delegate.polling")

TaskEvent = wire.DelegateTaskEvent | wire.DelegateTaskAbortEvent


class EventSink(Protocol):
    """Where task events go (the task runner). Must return quickly: it only schedules work."""

    #: set when the sink refused an offer for want of room and has room again
    work_wanted: asyncio.Event

    def on_events(self, events: Sequence[TaskEvent], source: str) -> None: ...


async def fetch_events(client: ManagerClient, delegate_id: str, sink: EventSink,
                       source: str) -> None:
    answer = await client.task_events(delegate_id)
    if answer.delegate_task_events:
        sink.on_events(answer.delegate_task_events, source)


class Link:
    """What the stream and the poller are both built from (the agent makes one of the two)."""

    def __init__(self, settings: Settings, client: ManagerClient, registrar: Registrar,
                 liveness: Liveness, metrics: Metrics, sink: EventSink) -> None:
        self._s = settings
        self._client = client
        self._registrar = registrar
        self._liveness = liveness
        self._metrics = metrics
        self._sink = sink
        #: short-lived tasks (the stream's sequence-file writes), kept until they are done
        self._background: set[asyncio.Task[None]] = set()

    def loops(self) -> dict[str, Coroutine[Any, Any, None]]:
        raise NotImplementedError


class Poller(Link):
    def loops(self) -> dict[str, Coroutine[Any, Any, None]]:
        return {"heartbeats": self.heartbeats(), "task_events": self.task_events()}

    async def heartbeats(self) -> None:
        due = time.monotonic()
        while True:
            now = time.monotonic()
            self._metrics.heartbeat_delay.observe(max(now - due, 0.0))
            due = now + self._s.delegate_heartbeat_interval_s
            await self._beat()
            await asyncio.sleep(max(due - time.monotonic(), 0.0))

    async def _beat(self) -> None:
        try:
            await self._registrar.ensure()
            self._metrics.heartbeats_sent.inc()
            answer = await self._client.heartbeat(self._registrar.params())
        except (SelfDestruct, TokenRevoked):
            raise
        except ManagerRejected as exc:
            self._metrics.heartbeats_failed.inc()
            self._liveness.failed(str(exc))
            if exc.status == 404 or exc.code == "DELEGATE_CONNECTION_INVALID":
                # forgotten or deleted: the registration answer tells which
                _log.warning("heartbeat.unknown_delegate", error=str(exc))
                self._registrar.forgotten()
            else:
                _log.warning("heartbeat.failed", error=str(exc))
            return
        except DelegateError as exc:
            self._metrics.heartbeats_failed.inc()
            self._liveness.failed(str(exc))
            _log.warning("heartbeat.failed", error=str(exc))
            return
        if answer.status == wire.DelegateStatus.DELETED:
            raise SelfDestruct("the manager answered a heartbeat with status DELETED")
        await self._registrar.store_sequence(answer.delegate_random_token, answer.sequence_number)
        self._liveness.acked()

    async def task_events(self) -> None:
        interval = self._s.delegate_poll_interval_s
        while True:
            try:
                delegate_id = await self._registrar.ensure()
                await fetch_events(self._client, delegate_id, self._sink, "poll")
            except (SelfDestruct, TokenRevoked):
                raise
            except ManagerRejected as exc:
                if exc.code == "DELEGATE_SUPERSEDED":
                    raise Superseded(str(exc)) from None
                _log.warning("task_events.failed", error=str(exc))
            except DelegateError as exc:
                _log.warning("task_events.failed", error=str(exc))
            # a little jitter so that a fleet of pollers does not beat in step
            await asyncio.sleep(interval * random.uniform(0.9, 1.0))
