"""The local manager's one settings object, built once by `cli.run` (or a test) and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ManagerSettings:
    """Knobs of the local manager; every duration carries its unit in its name."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0  # 0: the OS picks a free port; `delegate.env` holds the real one
    #: a delegate without register / keep-alive / heartbeat for this long is DISCONNECTED
    disconnect_after_s: float = 300.0
    #: an ECS slot untouched for this long may be taken by a new ECS task of the same hostname
    ecs_stale_slot_s: float = 100.0
    #: a STARTED task its delegate's heartbeats have not listed for this long is re-queued
    task_orphan_s: float = 30.0
    #: QUEUED tasks are broadcast again this often (10 delegates per round)
    rebroadcast_s: float = 5.0
    #: a VALIDATING task without a delegate whose capability checks pass fails after this long
    validation_timeout_s: float = 120.0
    #: how often the periodic job runs (expiry, re-queue, rebroadcast, disconnect marking)
    tick_s: float = 1.0
    #: delegates told about one task per broadcast round
    broadcast_fanout: int = 10

    @property
    def db_path(self) -> Path:
        return self.data_dir / "manager.sqlite3"

    @property
    def env_path(self) -> Path:
        return self.data_dir / "delegate.env"
