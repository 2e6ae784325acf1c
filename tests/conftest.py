"""Fixtures shared by every test folder: real processes on loopback, cleaned up after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import Manager, Process, start_delegate


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[Manager]:
    with Manager(tmp_path / "manager", "--disconnect-after-s", "5", "--ecs-stale-slot-s", "3",
                 "--task-orphan-s", "5", "--rebroadcast-s", "1") as m:
        yield m


@pytest.fixture
def delegates(manager: Manager, tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Factory: `delegates(name="d1", **env)` starts a delegate process; all are stopped after."""
    started: list[Process] = []

    def start(name: str = "d1", **env: str) -> Process:
        proc = start_delegate(manager, tmp_path / name, **env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
