"""Fixtures for the hostile-manager suite: a scripted manager and real delegate processes.

Every delegate runs with its current directory, HOME and TMPDIR in an `outside` directory; after
the test that directory must still be empty: a delegate writes only into its work dir, whatever
the manager sends.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.hostile.scripted import HostileManager
from tests.support import Process, python_env, wait_until


@pytest.fixture
def hostile() -> Iterator[HostileManager]:
    with HostileManager() as manager:
        yield manager


class Delegates:
    def __init__(self, manager: HostileManager, tmp: Path) -> None:
        self.manager = manager
        self.tmp = tmp
        self.outside = tmp / "outside"
        self.started: list[Process] = []

    def start(self, name: str = "d1", *, command: list[str] | None = None,
              drop: tuple[str, ...] = (), **env: str) -> Process:
        work = self.tmp / name
        work.mkdir(parents=True, exist_ok=True)
        for sub in ("home", "tmp"):
            (self.outside / sub).mkdir(parents=True, exist_ok=True)
        full = python_env(PYTHONDONTWRITEBYTECODE="1", HOME=str(self.outside / "home"),
                          TMPDIR=str(self.outside / "tmp"))
        full.update(self.manager.env(str(work), **env))
        for key in drop:
            full.pop(key, None)
        proc = Process(command or [sys.executable, "-m", "delegate"], full, self.outside).start()
        self.started.append(proc)
        return proc

    def written_outside(self) -> list[str]:
        return sorted(str(p.relative_to(self.outside)) for p in self.outside.rglob("*")
                      if p.is_file() or (p.is_dir() and p.name not in ("home", "tmp")))


@pytest.fixture
def delegates(hostile: HostileManager, tmp_path: Path) -> Iterator[Delegates]:
    pool = Delegates(hostile, tmp_path)
    yield pool
    for proc in pool.started:
        proc.stop()
    assert pool.written_outside() == [], "the delegate wrote outside its work dir"


def still_serving(proc: Process, manager: HostileManager, beats: int = 2,
                  timeout: float = 20.0) -> None:
    """The delegate is alive and the manager keeps hearing its heartbeats."""
    since = time.monotonic()
    wait_until(lambda: manager.beats_since(since) >= beats or not proc.alive(), timeout,
               f"{beats} heartbeats after the probe (last lines: {proc.tail()})")
    assert proc.alive(), f"the delegate exited {proc.proc.poll() if proc.proc else None}: " \
                         f"{proc.tail(12)}"


Start = Callable[..., Process]
