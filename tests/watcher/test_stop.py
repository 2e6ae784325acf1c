"""Stopping as ECS does: SIGTERM to the watcher drains the delegate's tasks and both exit 0;
a second SIGTERM stops at once."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from tests.support import Manager, wait_until
from tests.watcher.conftest import WatcherProc, pid_alive, wait_registered

Start = Callable[..., WatcherProc]


def started(manager: Manager, ids: list[str]) -> bool:
    return all(manager.task(t)["status"] == "STARTED" for t in ids)


@pytest.mark.timeout(60)
def test_sigterm_under_load_drains_unregisters_and_exits_0(manager: Manager, watchers: Start) -> None:
    w = watchers(WATCHER_DRAIN_BUDGET_S="20")
    pid = w.current_pid()
    delegate_id = wait_registered(manager)["delegateId"]
    ids = [manager.submit("SHELL_SCRIPT", {"script": f"sleep 2; echo {n}"}) for n in range(8)]
    wait_until(lambda: started(manager, ids), 20, "tasks running")
    w.send(signal.SIGTERM)
    assert w.wait(timeout=40) == 0
    assert [manager.task(t)["status"] for t in ids] == ["SUCCEEDED"] * 8
    assert w.wait_event("delegate.exited", delegate_pid=pid)["exit_code"] == 0
    assert not pid_alive(pid)
    wait_until(lambda: (manager.delegate(delegateId=delegate_id) or {}).get("status") == "DISCONNECTED", 10,
               "unregistered")
    assert any('"manager.unregistered"' in line for line in w.lines)


@pytest.mark.timeout(60)
def test_second_sigterm_stops_at_once(manager: Manager, watchers: Start) -> None:
    w = watchers(WATCHER_DRAIN_BUDGET_S="50")
    pid = w.current_pid()
    ids = [manager.submit("SHELL_SCRIPT", {"script": "sleep 60"}) for _ in range(3)]
    wait_until(lambda: started(manager, ids), 20, "tasks running")
    w.send(signal.SIGTERM)
    w.wait_event("watcher.stop_requested")
    w.send(signal.SIGTERM)
    w.wait(timeout=15)  # far below the 50 s drain budget
    w.wait_event("watcher.stop_forced")
    assert not pid_alive(pid)
