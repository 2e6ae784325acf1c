"""One delegate process under watch, and the process states it moves through.

The states are Supervisor's: STOPPED (not started yet), STARTING (spawned, not yet registered),
RUNNING (registered and heartbeating), BACKOFF (died; waiting before the next start), STOPPING (asked
to stop acquiring and drain), EXITED (gone as asked or for good), FATAL (will not be started again).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from watcher.process import ExitWatch


class ProcState(enum.StrEnum):
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    EXITED = "EXITED"
    FATAL = "FATAL"


class Role(enum.StrEnum):
    CURRENT = "current"  # the delegate doing the work
    CANDIDATE = "candidate"  # a new version (or a fresh process) not yet registered
    RETIRING = "retiring"  # an old process told to stop acquiring and drain


class Purpose(enum.StrEnum):
    START = "start"
    UPGRADE = "upgrade"
    REPLACE = "replace"  # same version, fresh process (memory limit)


@dataclass
class Child:
    pid: int
    artifact: str | None  # installed version it runs from; None = the image's own delegate
    role: Role
    state: ProcState
    purpose: Purpose
    spawned_at: float
    version: str | None = None  # what the delegate reports in new-delegate
    started: bool = False  # delegate-started seen
    ready: bool = False  # delegate-ready seen (registered and heartbeating)
    heartbeat: Any = None
    heartbeat_seen_at: float = 0.0
    stop_sent_at: float | None = None
    term_sent_at: float | None = None
    killed_for: str | None = None
    exit_code: int | None = None
    watch: ExitWatch | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        return {"pid": self.pid, "role": self.role.value, "state": self.state.value,
                "version": self.version, "artifact": self.artifact, "ready": self.ready}

    def handoff(self, offset: int) -> dict[str, Any]:
        """What a self-upgraded watcher needs to adopt this process."""
        return {**self.summary(), "purpose": self.purpose.value, "started": self.started,
                "offset": offset}
