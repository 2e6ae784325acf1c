"""One delegate process under watch: what the supervisor knows about it.

A child has a role, not a state of its own: the slot's state lives in the one state machine
(`watcher/machine.py`). The role says what the process is for: the current delegate, a candidate
(a new version or a fresh process, not yet registered), or a retiring one (told to stop acquiring
and drain).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from watcher.process import ExitWatch


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
    #: the current process that exited 0 handing its registration to this candidate
    replaces: Child | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        return {"pid": self.pid, "role": self.role.value, "version": self.version,
                "artifact": self.artifact, "ready": self.ready}

    def handoff(self, offset: int) -> dict[str, Any]:
        """What a self-upgraded watcher needs to adopt this process."""
        return {**self.summary(), "purpose": self.purpose.value, "started": self.started,
                "offset": offset}
