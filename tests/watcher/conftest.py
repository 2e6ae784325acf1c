"""Fixtures for the watcher: the real `python -m watcher` supervising real delegate processes."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack import publish
from tests.support import REPO, Manager, Process, delegate_env, wait_until


class WatcherProc(Process):
    """A watcher process plus helpers to see the delegates it runs through their channel files."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, work_dir: Path) -> None:
        super().__init__(args, env, cwd)
        self.work_dir = work_dir

    def delegate_states(self) -> list[dict[str, Any]]:
        states = []
        for path in (self.work_dir / "msg" / "data").glob("delegate.*.json"):
            try:
                states.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return states

    def delegate_pids(self) -> list[int]:
        return [int(s["pid"]) for s in self.delegate_states() if pid_alive(int(s["pid"]))]

    def current_pid(self, timeout: float = 20.0) -> int:
        """The pid of the delegate that last became ready as the current one."""
        event = self.wait_event("delegate.state", to="RUNNING", timeout=timeout)
        return int(event["delegate_pid"])

    def upgrade_checks(self) -> int:
        """Delegate upgrade checks the watcher has completed (its heartbeat file says)."""
        try:
            state = json.loads((self.work_dir / "msg" / "data" / "watcher.json").read_text())
        except (OSError, ValueError):
            return 0
        return int(state.get("upgradeChecks", {}).get("delegate", 0))

    def running_events(self) -> list[dict[str, Any]]:
        return self.find("delegate.state", to="RUNNING")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive for our purposes
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return False


def watcher_env(manager: Manager, work_dir: Path, **extra: str) -> dict[str, str]:
    env = delegate_env(manager, work_dir)
    env.update(
        WATCHER_HEARTBEAT_INTERVAL_S="0.5",
        WATCHER_HEARTBEAT_TIMEOUT_S="3",
        WATCHER_START_TIMEOUT_S="20",
        WATCHER_READY_TIMEOUT_S="15",
        WATCHER_DRAIN_BUDGET_S="10",
        WATCHER_UPGRADE_FIRST_CHECK_S="0.2",
        WATCHER_UPGRADE_CHECK_INTERVAL_S="0.5",
        WATCHER_UPGRADE_CHECK_JITTER_S="0",
        WATCHER_DELEGATE_COMMAND=f"{sys.executable} -m delegate",
        # the manager's development signing key (devstack publish signs with it)
        WATCHER_TRUSTED_KEYS=publish.public_key_b64(publish.dev_key(manager.data_dir)),
    )
    env.update(extra)
    return env


@pytest.fixture
def watchers(manager: Manager, tmp_path: Path) -> Iterator[Callable[..., WatcherProc]]:
    """Factory: `watchers(name="w1", **env)` starts a watcher; every process is gone after the test."""
    started: list[WatcherProc] = []

    def start(name: str = "w1", **env: str) -> WatcherProc:
        work = tmp_path / name
        work.mkdir(parents=True, exist_ok=True)
        proc = WatcherProc([sys.executable, "-m", "watcher"], watcher_env(manager, work, **env),
                           REPO, work)
        started.append(proc)
        return proc.start()  # type: ignore[return-value]

    yield start
    for proc in started:
        illegal = proc.find("watcher.illegal_transition")
        assert not illegal, f"a state change outside the table: {illegal}"
        pids = proc.delegate_pids()
        proc.stop(timeout=20)
        for pid in pids + proc.delegate_pids():
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def storage_url(manager: Manager) -> str:
    return f"{manager.url}/storage"


def wait_registered(manager: Manager, version: str | None = None, timeout: float = 20.0,
                    ) -> dict[str, Any]:
    def ok() -> dict[str, Any] | None:
        for d in manager.delegates():
            if d["status"] == "CONNECTED" and (version is None or d["version"] == version):
                return d
        return None

    return wait_until(ok, timeout, f"a CONNECTED delegate{' at ' + version if version else ''}",  # type: ignore[no-any-return]
                      every=0.1)
