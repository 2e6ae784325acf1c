"""Which delegate may take which task, and telling them: broadcast rounds over the stream.

Eligibility is computed from the in-memory delegate records (no SQL): connected; every selector
among the delegate's tags, name or group name; the task's group (if any) is the delegate's group;
the task type among `supportedTaskTypes` (empty = all); not excluded (RETRY_ON_OTHER_DELEGATE, a
failed capability check).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from manager.delegates import DelegateRecord, Delegates
from manager.hub import StreamHub
from protocol.wire import DelegateTaskEvent

log = structlog.get_logger("manager")


@dataclass(frozen=True)
class Target:
    """What eligibility needs to know about a task."""

    task_id: str
    account_id: str
    task_type: str
    selectors: tuple[str, ...]
    group_name: str | None
    excluded: frozenset[str]
    sync: bool


def matches(rec: DelegateRecord, t: Target) -> bool:
    """Eligibility without the connected check."""
    if rec.account_id != t.account_id or rec.delegate_id in t.excluded:
        return False
    if rec.instance_id and f"instance:{rec.instance_id}" in t.excluded:
        return False  # this process handed it back; the delegate restarted may take it
    if t.group_name and rec.group_name != t.group_name:
        return False
    if rec.supported_task_types and t.task_type not in rec.supported_task_types:
        return False
    return not t.selectors or set(t.selectors) <= rec.labels


def why_none(delegates: Iterable[DelegateRecord], t: Target) -> str:
    """The reason an unacquired task expired, naming the first requirement nobody met."""
    pool = [d for d in delegates if d.account_id == t.account_id]
    if not pool:
        return "no connected delegate"
    if t.excluded:
        pool = [d for d in pool if d.delegate_id not in t.excluded]
        if not pool:
            return f"no connected delegate other than the excluded {sorted(t.excluded)}"
    if t.group_name:
        pool = [d for d in pool if d.group_name == t.group_name]
        if not pool:
            return f"no connected delegate in group {t.group_name!r}"
    if t.selectors:
        pool = [d for d in pool if set(t.selectors) <= d.labels]
        if not pool:
            return f"no connected delegate matches selectors {list(t.selectors)}"
    pool = [d for d in pool if not d.supported_task_types or t.task_type in d.supported_task_types]
    if not pool:
        return f"no connected delegate supports task type {t.task_type!r}"
    return f"no eligible delegate acquired it in time ({len(pool)} were told about it)"


class Dispatcher:
    def __init__(self, delegates: Delegates, hub: StreamHub, *, fanout: int) -> None:
        self._delegates = delegates
        self._hub = hub
        self._fanout = fanout

    def eligible(self, t: Target, now: int) -> list[DelegateRecord]:
        return [d for d in self._delegates.by_id.values()
                if matches(d, t) and self._delegates.is_connected(d, now)]

    def reason(self, t: Target, now: int) -> str:
        return why_none(self._delegates.connected(now), t)

    async def broadcast(self, t: Target, round_no: int, now: int) -> int:
        """Round `round_no`: tell the next `fanout` eligible streaming delegates; returns how many."""
        listeners = sorted(d.delegate_id for d in self.eligible(t, now)
                           if self._hub.has(d.delegate_id))
        if not listeners:
            return 0
        count = min(self._fanout, len(listeners))
        start = (round_no * self._fanout) % len(listeners)
        chosen = [listeners[(start + i) % len(listeners)] for i in range(count)]
        event = DelegateTaskEvent(account_id=t.account_id, delegate_task_id=t.task_id,
                                  sync=t.sync, task_type=t.task_type).dump()
        sent = 0
        for delegate_id in chosen:
            sent += await self._hub.send(delegate_id, event)
        log.debug("task.broadcast", task_id=t.task_id, round=round_no, delegates=sent)
        return sent
