"""Supervision with real processes and real signals: crash, hang, bad configuration, stop."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import pytest

from tests.support import Manager, wait_until
from tests.watcher.conftest import WatcherProc, pid_alive, wait_registered

Start = Callable[..., WatcherProc]


@pytest.mark.timeout(60)
def test_sigkilled_delegate_is_back_and_registered_within_5s(manager: Manager, watchers: Start) -> None:
    w = watchers()
    first = w.current_pid()
    wait_registered(manager)
    os.kill(first, signal.SIGKILL)
    # the watcher sees the exit, restarts at once, and the new process registers (delegate-ready)
    new_pid = wait_until(lambda: next((p for p in w.delegate_pids() if p != first), None), 5.0,
                         "a new delegate process")
    back = w.wait_event("delegate.ready", timeout=5.0, delegate_pid=new_pid)
    assert back["role"] == "current"
    exited = w.wait_event("delegate.exited", delegate_pid=first)
    assert exited["exit_code"] == -signal.SIGKILL
    assert not pid_alive(first)
    assert w.alive()


@pytest.mark.timeout(60)
def test_sigstopped_delegate_is_replaced_after_the_heartbeat_timeout(manager: Manager,
                                                                     watchers: Start) -> None:
    w = watchers(WATCHER_HEARTBEAT_TIMEOUT_S="3")
    first = w.current_pid()
    os.kill(first, signal.SIGSTOP)
    hung = w.wait_event("delegate.hung", timeout=15, delegate_pid=first)
    assert "no heartbeat" in hung["why"]
    w.wait_event("delegate.exited", delegate_pid=first)
    new_pid = wait_until(lambda: next((e["delegate_pid"] for e in w.find("delegate.ready")
                                       if e["delegate_pid"] != first), None), 15, "a replacement to be ready")
    assert pid_alive(new_pid) and not pid_alive(first)
    wait_registered(manager)


@pytest.mark.timeout(60)
def test_bad_configuration_goes_fatal_with_a_clear_message_not_a_restart_loop(
        manager: Manager, watchers: Start) -> None:
    w = watchers(ACCOUNT_ID="")
    assert w.wait(timeout=30) == 3
    fatal = w.find("delegate.state", to="FATAL")
    assert len(fatal) == 1 and "configuration" in fatal[0]["why"]
    assert len(w.find("delegate.spawned")) == 1  # no restart loop
    assert any("ACCOUNT_ID" in line for line in w.lines)  # the delegate's own message names it


@pytest.mark.timeout(30)
def test_bad_watcher_setting_exits_3_naming_the_variable(manager: Manager, watchers: Start) -> None:
    w = watchers(WATCHER_HEARTBEAT_TIMEOUT_S="soon", WATCHER_DRAIN_BUDGET_S="-1")
    assert w.wait(timeout=20) == 3
    text = "\n".join(w.lines)
    assert "WATCHER_HEARTBEAT_TIMEOUT_S: expected a number" in text
    assert "WATCHER_DRAIN_BUDGET_S" in text
    assert not w.find("delegate.spawned")


@pytest.mark.timeout(60)
def test_watcher_writes_its_heartbeat_and_a_delegate_without_watcher_says_so(
        manager: Manager, watchers: Start) -> None:
    w = watchers()
    pid = w.current_pid()
    assert (w.work_dir / "msg" / "data" / "watcher.json").exists()
    os.kill(w.pid, signal.SIGKILL)  # the watcher is gone; the delegate keeps working
    w.wait(timeout=10)
    # the delegate's log goes to the same stdout the test collects
    wait_until(lambda: any('"watcher.gone"' in line for line in w.lines), 20, "watcher.gone")
    assert pid_alive(pid)
    os.kill(pid, signal.SIGTERM)


@pytest.mark.timeout(60)
def test_memory_limit_restarts_gracefully(manager: Manager, watchers: Start) -> None:
    w = watchers(WATCHER_DELEGATE_MEMORY_LIMIT_MIB="1")  # any delegate is bigger than 1 MiB
    first = w.current_pid()
    w.wait_event("delegate.memory_exceeded", timeout=20, delegate_pid=first)
    replaced = w.wait_event("delegate.replaced", timeout=20)
    assert replaced["old_pid"] == first
    exited = w.wait_event("delegate.exited", timeout=20, delegate_pid=first)
    assert exited["exit_code"] == 0 and exited["killed_for"] is None
