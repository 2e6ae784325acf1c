"""Upgrades end to end: `devstack publish` on the real manager, the watcher downloads, verifies,
starts the new version beside the old one, and hands over without losing or repeating a task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import zipapp
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack import publish
from tests.support import REPO, Manager, free_port, http_get, python_env, wait_until
from tests.watcher.conftest import WatcherProc, pid_alive, storage_url, wait_registered

Start = Callable[..., WatcherProc]


def upgrading_watcher(manager: Manager, watchers: Start, **env: str) -> WatcherProc:
    return watchers(DELEGATE_STORAGE_URL=storage_url(manager), **env)


def bad_artifact(tmp_path: Path, main: str) -> Path:
    src = tmp_path / "bad-src"
    src.mkdir()
    (src / "__main__.py").write_text(main)
    out = tmp_path / "bad.pyz"
    zipapp.create_archive(src, out)
    return out


def submit_marks(manager: Manager, marks: Path, count: int, every_s: float,
                 ids: list[str], sleep_s: float = 0.2) -> None:
    for n in range(count):
        ids.append(manager.submit("SHELL_SCRIPT", {
            "script": f'sleep {sleep_s}; echo "$MARK" >> {marks}',
            "environment": {"MARK": str(n)}}, timeoutMs=60_000))
        time.sleep(every_s)


@pytest.mark.timeout(110)
def test_publish_under_load_every_task_completes_exactly_once(manager: Manager, watchers: Start,
                                                              tmp_path: Path) -> None:
    w = upgrading_watcher(manager, watchers)
    old_pid = w.current_pid()
    wait_registered(manager, version="1.0.0")
    marks = tmp_path / "marks"
    ids: list[str] = []
    feeder = threading.Thread(target=submit_marks, args=(manager, marks, 200, 0.03, ids))
    feeder.start()
    wait_until(lambda: len(ids) >= 40, 30, "tasks streaming")
    # the real CLI, as a person would run it
    done = subprocess.run([sys.executable, "-m", "devstack", "publish", "--version", "2.0.0",
                           "--data-dir", str(manager.data_dir)], cwd=REPO, env=python_env(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "2.0.0 delegate/2.0.0/delegate.pyz" in done.stdout
    completed = w.wait_event("upgrade.completed", timeout=40)
    assert completed["old_pid"] == old_pid and completed["version"] == "2.0.0"
    feeder.join(timeout=60)
    assert len(ids) == 200
    retired = w.wait_event("delegate.exited", timeout=40, delegate_pid=old_pid)
    assert retired["exit_code"] == 0
    finals = {t: manager.wait_task(t, timeout=60)["status"] for t in ids}
    assert Counter(finals.values()) == Counter({"SUCCEEDED": 200})
    lines = marks.read_text().split()
    assert sorted(map(int, lines)) == list(range(200))  # each ran once: no loss, no repeat
    # the manager sees the new version, and the old process is gone
    wait_registered(manager, version="2.0.0")
    wait_until(lambda: all(d["version"] == "2.0.0" for d in manager.delegates()
                           if d["status"] == "CONNECTED"), 10, "only 2.0.0 connected")
    assert not pid_alive(old_pid)
    installed = json.loads((w.work_dir / "versions" / "delegate" / "installed.json").read_text())
    assert installed == {"current": "2.0.0", "previous": None}


@pytest.mark.timeout(60)
def test_checksum_mismatch_is_refused_and_the_delegate_carries_on(manager: Manager, watchers: Start,
                                                                 tmp_path: Path) -> None:
    line = publish.publish(manager.data_dir, "delegate", "2.0.0")
    version, path, _sha = line.split()
    (manager.data_dir / "storage" / "delegateprod.txt").write_text(f"{version} {path} {'0' * 64}\n")
    w = upgrading_watcher(manager, watchers)
    pid = w.current_pid()
    refused = w.wait_event("upgrade.delegate_checksum_mismatch", timeout=20)
    assert "sha256" in refused["error"]
    assert not w.find("upgrade.starting")
    assert not (w.work_dir / "versions" / "delegate" / "2.0.0" / "delegate.pyz").exists()
    task = manager.submit("SHELL_SCRIPT", {"script": "echo still working"})
    assert manager.wait_task(task)["status"] == "SUCCEEDED"
    assert pid_alive(pid) and w.delegate_pids() == [pid]


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("kind", "main"), [
    ("crashes", "raise SystemExit(1)\n"),
    ("hangs", "import time\ntime.sleep(600)\n"),
])
def test_a_new_version_that_fails_to_start_is_rolled_back(manager: Manager, watchers: Start,
                                                          tmp_path: Path, kind: str, main: str) -> None:
    w = upgrading_watcher(manager, watchers, WATCHER_READY_TIMEOUT_S="3", WATCHER_START_TIMEOUT_S="3")
    pid = w.current_pid()
    publish.publish(manager.data_dir, "delegate", "3.0.0", bad_artifact(tmp_path, main))
    rolled = w.wait_event("upgrade.rolled_back", timeout=30)
    assert rolled["version"] == "3.0.0" and rolled["to"] == "1.0.0"
    # the old one keeps working, and 3.0.0 is not tried again
    task = manager.submit("SHELL_SCRIPT", {"script": "echo after rollback"})
    assert manager.wait_task(task)["status"] == "SUCCEEDED"
    checks = w.upgrade_checks()
    wait_until(lambda: w.upgrade_checks() >= checks + 3, 20, "three more upgrade checks")
    assert len(w.find("upgrade.starting")) == 1
    assert pid_alive(pid) and w.delegate_pids() == [pid]
    wait_registered(manager, version="1.0.0")
    failed = json.loads((w.work_dir / "versions" / "delegate" / "failed.json").read_text())
    assert failed == ["3.0.0"]
    # a newer version is tried again and wins
    publish.publish(manager.data_dir, "delegate", "3.0.1")
    assert w.wait_event("upgrade.completed", timeout=40)["version"] == "3.0.1"
    wait_registered(manager, version="3.0.1")


@pytest.mark.timeout(60)
def test_watcher_upgrades_itself_without_touching_the_delegate(manager: Manager, watchers: Start) -> None:
    publish.publish(manager.data_dir, "watcher", "2.0.0")
    w = watchers(WATCHER_STORAGE_URL=storage_url(manager))
    pid = w.current_pid()
    w.wait_event("upgrade.watcher_completed", timeout=30, version="2.0.0")
    assert w.alive()  # same process (exec), still the container's entrypoint
    assert pid_alive(pid) and w.delegate_pids() == [pid]
    assert w.find("watcher.adopted", delegate_pid=pid)
    state = json.loads((w.work_dir / "msg" / "data" / "watcher.json").read_text())
    assert state["pid"] == w.pid
    wait_until(lambda: json.loads((w.work_dir / "msg" / "data" / "watcher.json").read_text())
               ["version"] == "2.0.0", 10, "the new watcher's heartbeat")
    # the new watcher supervises the adopted delegate: a crash is healed
    os.kill(pid, 9)
    w.wait_event("delegate.exited", timeout=10, delegate_pid=pid)
    wait_until(lambda: [e for e in w.find("delegate.ready") if e["delegate_pid"] != pid], 15, "restart")


@pytest.mark.timeout(60)
def test_upgrade_with_the_task_specs_fixed_health_port(manager: Manager, watchers: Start) -> None:
    """Old and new process serve DELEGATE_HEALTH_PORT at once during the hand-over."""
    port = free_port()
    w = upgrading_watcher(manager, watchers, DELEGATE_HEALTH_PORT=str(port))
    w.current_pid()
    publish.publish(manager.data_dir, "delegate", "2.0.0")
    assert w.wait_event("upgrade.completed", timeout=40)["version"] == "2.0.0"
    wait_until(lambda: http_get(f"http://127.0.0.1:{port}/health")[0] == 200, 10, "/health 200")
