"""The watcher's version reaches the manager: a real watcher, its real delegate, the real manager."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

import watcher
from devstack import publish
from tests.support import Manager, wait_until
from tests.watcher.conftest import WatcherProc, pid_alive, storage_url, wait_registered

Start = Callable[..., WatcherProc]


def page_row(manager: Manager, host_name: str) -> str:
    """The delegates page's row of this host (logged in, as a person would see it)."""
    with manager.login().open(f"{manager.url}/ui/delegates", timeout=10) as resp:
        page = resp.read().decode()
    return next((r for r in page.split("<tr>") if f"<td>{host_name}</td>" in r), "")


@pytest.mark.timeout(90)
def test_the_page_shows_the_watchers_version_and_its_self_upgrade(manager: Manager,
                                                                  watchers: Start) -> None:
    w = watchers(WATCHER_STORAGE_URL=storage_url(manager))  # nothing published yet
    pid = w.current_pid()
    first = wait_registered(manager)
    assert first["watcherVersion"] == watcher.__version__
    # the version column, then the watcher column
    cells = f"<td>{first['version']}</td><td>{watcher.__version__}</td>"
    assert cells in page_row(manager, first["hostName"])
    # the watcher upgrades itself; the delegate it keeps reports the new watcher at its next call
    publish.publish(manager.data_dir, "watcher", "9.1.0")
    w.wait_event("upgrade.watcher_completed", timeout=30, version="9.1.0")

    def shown() -> dict[str, object] | None:
        return next((d for d in manager.delegates() if d["delegateId"] == first["delegateId"]
                     and d.get("watcherVersion") == "9.1.0"), None)

    after = wait_until(shown, 30, "the manager to show watcher 9.1.0 for the same delegate")
    assert after["status"] == "CONNECTED"
    assert pid_alive(pid) and w.delegate_pids() == [pid]  # the same process, not a restart
    assert json.loads((w.work_dir / "msg" / "data" / "watcher.json").read_text())["version"] == "9.1.0"
    row = page_row(manager, first["hostName"])
    assert f"<td>{first['version']}</td><td>9.1.0</td>" in row


@pytest.mark.timeout(60)
def test_a_delegate_without_a_watcher_reports_none(manager: Manager,
                                                   delegates: Callable[..., object]) -> None:
    delegates()
    d = wait_registered(manager)
    assert d.get("watcherVersion") is None
    assert f"<td>{d['version']}</td><td>-</td>" in page_row(manager, d["hostName"])
