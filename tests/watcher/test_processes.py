"""The watcher as a process among processes: it honours the delegate's self-destruct (exit 4) and a
revoked token (exit 5), reaps the orphans a SIGKILLed delegate leaves behind, and keeps a same-uid
script out of its environment."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import REPO, Manager, Process, python_env, wait_until
from tests.watcher.conftest import WatcherProc, pid_alive, wait_registered

Start = Callable[..., WatcherProc]
NOBODY = 65534


def proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of `pid`, or None once it is gone (reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


@pytest.mark.timeout(60)
def test_self_destruct_exit_4_stops_the_watcher_with_4_and_no_restart(manager: Manager,
                                                                       watchers: Start) -> None:
    w = watchers()
    pid = w.current_pid()
    delegate_id = wait_registered(manager)["delegateId"]
    manager.api("DELETE", f"/api/setup/delegates/{delegate_id}")  # the manager removes it
    assert w.wait(timeout=30) == 4
    assert w.wait_event("delegate.exited", delegate_pid=pid)["exit_code"] == 4
    assert w.find("delegate.state", to="EXITED", trigger="self_destruct")
    assert len(w.find("delegate.spawned")) == 1  # not restarted
    assert not pid_alive(pid)


@pytest.mark.timeout(60)
def test_a_revoked_token_exit_5_stops_the_watcher_with_5_and_no_restart(manager: Manager,
                                                                       watchers: Start) -> None:
    value = manager.api("POST", "/api/setup/delegate-tokens", {"name": "w-team"})["value"]
    w = watchers(DELEGATE_TOKEN=value)
    pid = w.current_pid()
    wait_registered(manager)
    manager.api("POST", "/api/setup/delegate-tokens/w-team/revoke", {})
    assert w.wait(timeout=30) == 5
    assert w.wait_event("delegate.exited", delegate_pid=pid)["exit_code"] == 5
    assert w.find("delegate.state", to="EXITED", trigger="token_revoked")
    assert len(w.find("delegate.spawned")) == 1  # not restarted
    assert value not in "\n".join(w.lines)


@pytest.mark.timeout(90)
def test_orphans_of_a_sigkilled_delegate_are_adopted_and_reaped(manager: Manager, watchers: Start,
                                                                tmp_path: Path) -> None:
    w = watchers()
    delegate = w.current_pid()
    wait_registered(manager)
    pids = tmp_path / "pids"
    manager.submit("SHELL_SCRIPT", {"script": f"sleep 300 & echo $$ $! > {pids}; wait"},
                   timeoutMs=300_000)
    shell, sleeper = wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 2
                                and [int(p) for p in pids.read_text().split()], 30, "the script's pids")
    os.kill(delegate, signal.SIGKILL)
    # the script outlives its delegate and becomes the watcher's child (subreaper), not init's
    wait_until(lambda: (proc_state(shell) or ("", 0))[1] == w.pid, 20, "the script re-parented")
    os.kill(shell, signal.SIGKILL)
    wait_until(lambda: proc_state(shell) is None, 20, "the orphaned script reaped, not a zombie")
    wait_until(lambda: (proc_state(sleeper) or ("", 0))[1] == w.pid, 20, "its child re-parented")
    os.kill(sleeper, signal.SIGKILL)
    wait_until(lambda: proc_state(sleeper) is None, 20, "the orphaned sleep reaped, not a zombie")
    assert w.alive() and not w.find("delegate.state", to="FATAL")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another uid can use (pytest's tmp_path is private to this uid)."""
    path = Path(tempfile.mkdtemp(prefix="watcher-uid-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def as_script_uid(argv: list[str]) -> list[str]:
    """Run as a plain uid: root could read any process's environ whatever its dumpable flag."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]


@pytest.mark.timeout(60)
def test_a_same_uid_script_cannot_read_the_watchers_environment(shared_dir: Path) -> None:
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run this test as root")
    secret = "tok-" + os.urandom(8).hex()
    env = python_env(DELEGATE_TOKEN=secret, WATCHER_WORK_DIR=str(shared_dir), LOG_FORMAT="json",
                     WATCHER_START_TIMEOUT_S="600", WATCHER_DELEGATE_COMMAND="sleep 600",
                     WATCHER_DRAIN_BUDGET_S="1")
    w = Process(as_script_uid([sys.executable, "-m", "watcher"]), env, REPO).start()
    try:
        spawned = w.wait_event("delegate.spawned", timeout=30)
        reader = ("import sys\ntry:\n    print(open(f'/proc/{sys.argv[1]}/environ', 'rb').read()"
                  ".count(sys.argv[2].encode()))\nexcept OSError as e:\n    print(type(e).__name__)\n")

        def read(pid: int) -> str:
            done = subprocess.run(as_script_uid([sys.executable, "-c", reader, str(pid), secret]),
                                  capture_output=True, text=True, timeout=30, check=False)
            return done.stdout.strip() or done.stderr

        watcher_pid = int(spawned["pid"])
        assert proc_state(watcher_pid) is not None
        assert read(watcher_pid) == "PermissionError"
        # the same reader does see a dumpable process of that uid: the check above can fail
        assert read(int(spawned["delegate_pid"])) == "1"
    finally:
        w.stop(timeout=20)
