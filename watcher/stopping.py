"""Timeouts and stopping: when a delegate process is overdue, and how the watcher stops on SIGTERM.

These are decisions over the supervisor's processes; killing goes through the supervisor's `kill`
(one log line per reason), and the slot's state changes only through the state machine.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from watcher import channel as ch
from watcher import process
from watcher.child import Child, Role
from watcher.log import log
from watcher.settings import Settings

FORCE_KILL_AFTER_S = 3.0
TERM_GRACE_S = 5.0

Kill = Callable[[Child, str, str], None]


def check_timeouts(children: list[Child], now: float, s: Settings, kill: Kill) -> None:
    """Kill a process that never said delegate-started, stopped heartbeating, was not ready in time
    as a candidate, or outlived its drain budget as a retiring one (SIGTERM first, then SIGKILL)."""
    for child in children:
        if not child.started and now - child.spawned_at > s.start_timeout_s:
            kill(child, "start_timeout",
                 f"no delegate-started within WATCHER_START_TIMEOUT_S={s.start_timeout_s:g}")
        elif child.started and now - child.heartbeat_seen_at > s.heartbeat_timeout_s:
            kill(child, "hung", f"no heartbeat for {now - child.heartbeat_seen_at:.1f}s "
                 f"(WATCHER_HEARTBEAT_TIMEOUT_S={s.heartbeat_timeout_s:g})")
        elif (child.role == Role.CANDIDATE and not child.ready
              and now - child.spawned_at > s.ready_timeout_s):
            kill(child, "not_ready", f"not registered within WATCHER_READY_TIMEOUT_S={s.ready_timeout_s:g}")
        elif child.role == Role.RETIRING and child.stop_sent_at is not None:
            waited = now - child.stop_sent_at
            if waited > s.upgrade_drain_budget_s + TERM_GRACE_S and child.term_sent_at is None:
                child.term_sent_at = now
                process.kill(child.pid, signal.SIGTERM)
            elif child.term_sent_at is not None and now - child.term_sent_at > TERM_GRACE_S:
                kill(child, "drain_timeout", "did not exit after its drain budget")


class Shutdown:
    """SIGTERM/SIGINT: the first drains every process within WATCHER_DRAIN_BUDGET_S, the second
    stops at once. Signal handlers only count (`signalled`); the loop acts (`take`)."""

    def __init__(self, settings: Settings, channel: ch.Channel) -> None:
        self.s = settings
        self.channel = channel
        self.since: float | None = None
        self._signals = 0
        self._handled = 0

    def signalled(self) -> None:
        self._signals += 1

    @property
    def requested(self) -> bool:
        return self.since is not None

    def take(self, now: float, live: list[Child]) -> bool:
        """Act on new signals; True when the first one (the stop request) was just taken."""
        first = False
        while self._handled < self._signals:
            self._handled += 1
            if self._handled == 1:
                first = True
                self.since = now
                log.info("watcher.stop_requested", drain_budget_s=self.s.drain_budget_s)
                for child in live:
                    self.channel.send(child.pid, ch.STOP_ACQUIRING,
                                      exitWhenDrainedS=self.s.drain_budget_s, handover=False)
                    child.stop_sent_at = now
            elif self._handled == 2:
                log.warning("watcher.stop_forced", note="second signal: not waiting for tasks")
                self._force(now, live)
        return first

    def _force(self, now: float, live: list[Child]) -> None:
        loop = asyncio.get_running_loop()
        for child in live:
            process.kill(child.pid, signal.SIGTERM)
            loop.call_later(0.2, process.kill, child.pid, signal.SIGTERM)  # the second one forces
            child.term_sent_at = now
        assert self.since is not None
        self.since = min(self.since, now - self.s.drain_budget_s - 1.0)

    def police(self, now: float, live: list[Child], kill: Kill) -> None:
        """Past the budget: SIGTERM, then SIGKILL after FORCE_KILL_AFTER_S."""
        assert self.since is not None
        waited = now - self.since
        for child in live:
            if waited > self.s.drain_budget_s + 1.0 and child.term_sent_at is None:
                child.term_sent_at = now
                process.kill(child.pid, signal.SIGTERM)
            elif child.term_sent_at is not None and now - child.term_sent_at > FORCE_KILL_AFTER_S:
                kill(child, "stop_timeout", "did not exit within the drain budget")
