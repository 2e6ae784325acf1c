"""The delegate slot's state machine: one table of transitions, and the one place that applies them.

The states are Supervisor's (STOPPED, STARTING, RUNNING, BACKOFF, STOPPING, EXITED, FATAL). The
supervisor never assigns a state: it reports an `Event` and `Machine.fire` looks the pair up in
`TRANSITIONS`, logs it as `delegate.state` (`from`, `to`, `trigger`, `why`) and applies it. A pair that
is not in the table is a bug: it is logged as `watcher.illegal_transition` and the state is kept
(the tests fail on that line; in production the delegate keeps being supervised).
"""

from __future__ import annotations

import enum
from typing import Any

from watcher.log import log

STATE_EVENT = "delegate.state"
ILLEGAL_EVENT = "watcher.illegal_transition"


class State(enum.StrEnum):
    STOPPED = "STOPPED"  # no process started yet
    STARTING = "STARTING"  # spawned, not yet registered
    RUNNING = "RUNNING"  # registered and heartbeating
    BACKOFF = "BACKOFF"  # died or failed to start; waiting before the next start
    STOPPING = "STOPPING"  # asked to stop acquiring and drain
    EXITED = "EXITED"  # gone as asked, or for good (self-destruct); the watcher exits
    FATAL = "FATAL"  # will not be started again; the watcher exits non-zero


class Event(enum.StrEnum):
    SPAWNED = "spawned"
    READY = "ready"
    TOOK_OVER = "took_over"
    HANDED_OVER = "handed_over"
    RESUMED = "resumed"
    FAILED = "failed"
    GAVE_UP = "gave_up"
    BAD_CONFIG = "bad_config"
    SELF_DESTRUCT = "self_destruct"
    TOKEN_REVOKED = "token_revoked"  # noqa: S105 - an event name, not a secret
    EXITED_BY_ITSELF = "exited_by_itself"
    STOP = "stop"
    STOPPED = "stopped"
    ADOPTED_STARTING = "adopted_starting"
    ADOPTED_RUNNING = "adopted_running"


S, E = State, Event
_LIVE = (S.STARTING, S.RUNNING)

TRANSITIONS: dict[tuple[State, Event], State] = {
    # A process exists for the slot; RUNNING needs its delegate-ready.
    (S.STOPPED, E.SPAWNED): S.STARTING,
    # The backoff delay elapsed and the next process was spawned.
    (S.BACKOFF, E.SPAWNED): S.STARTING,
    # The current process registered and heartbeats (delegate-ready).
    (S.STARTING, E.READY): S.RUNNING,
    # A new version (or a fresh process past the memory limit) was ready and took over; the old one
    # drains. From STARTING/BACKOFF: the old current died while the candidate was starting.
    (S.RUNNING, E.TOOK_OVER): S.RUNNING,
    (S.STARTING, E.TOOK_OVER): S.RUNNING,
    (S.BACKOFF, E.TOOK_OVER): S.RUNNING,
    # The current process exited 0 because a candidate beside it registered as this delegate and the
    # manager told the older connection to stop: the slot waits for the candidate's delegate-ready.
    (S.RUNNING, E.HANDED_OVER): S.STARTING,
    (S.STARTING, E.HANDED_OVER): S.STARTING,
    # The new version died while the old one drained: the old one is resumed and is current again.
    (S.RUNNING, E.RESUMED): S.RUNNING,
    (S.STARTING, E.RESUMED): S.RUNNING,
    # Died, hung (killed), never said delegate-started, or could not be spawned: wait, then start
    # again, longer each failure in a row (watcher/backoff.py).
    (S.STOPPED, E.FAILED): S.BACKOFF,
    (S.STARTING, E.FAILED): S.BACKOFF,
    (S.RUNNING, E.FAILED): S.BACKOFF,
    (S.BACKOFF, E.FAILED): S.BACKOFF,
    # More failed starts in a row than WATCHER_START_RETRIES with the image's own version: restarting
    # has not helped, let ECS replace the container.
    **{(s, E.GAVE_UP): S.FATAL for s in (S.STOPPED, S.STARTING, S.RUNNING, S.BACKOFF)},
    # Exit 3: the delegate rejected its configuration; restarting will not help.
    **{(s, E.BAD_CONFIG): S.FATAL for s in _LIVE},
    # Exit 4: the manager removed this delegate; it must not come back.
    **{(s, E.SELF_DESTRUCT): S.EXITED for s in _LIVE},
    # Exit 5: the manager refused the delegate token as revoked or expired; a restart would be refused
    # the same way, so the slot ends (the watcher exits 5) until a new token is installed.
    **{(s, E.TOKEN_REVOKED): S.EXITED for s in _LIVE},
    # Exit 0 unprompted: someone stopped the delegate on purpose; so does the container.
    **{(s, E.EXITED_BY_ITSELF): S.EXITED for s in _LIVE},
    # SIGTERM (ECS stops the task) with a process: it drains within the budget.
    **{(s, E.STOP): S.STOPPING for s in _LIVE},
    # SIGTERM with no process to drain.
    (S.STOPPED, E.STOP): S.STOPPED,
    (S.BACKOFF, E.STOP): S.STOPPED,
    # Asked to stop, and it did.
    (S.STOPPING, E.STOPPED): S.EXITED,
    # A self-upgraded watcher takes back the processes its previous image started.
    (S.STOPPED, E.ADOPTED_STARTING): S.STARTING,
    (S.STOPPED, E.ADOPTED_RUNNING): S.RUNNING,
}

TERMINAL = frozenset({S.EXITED, S.FATAL})


class Machine:
    def __init__(self, state: State = State.STOPPED) -> None:
        self.state = state

    def fire(self, event: Event, why: str, **fields: Any) -> bool:
        """Apply `event`; False (and an error line) if the table has no such transition."""
        target = TRANSITIONS.get((self.state, event))
        if target is None:
            log.error(ILLEGAL_EVENT, state=self.state.value, trigger=event.value, why=why, **fields)
            return False
        log.info(STATE_EVENT, **{"from": self.state.value}, to=target.value, trigger=event.value,
                 why=why, **fields)
        self.state = target
        return True

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL
