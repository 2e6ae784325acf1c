"""Profiles (startup scripts managed in the manager) and INIT_SCRIPT."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import Manager, Process, wait_until

pytestmark = pytest.mark.timeout(60)
Start = Callable[..., Process]


def result(manager: Manager, delegate_id: str) -> dict[str, object] | None:
    return manager.api(  # type: ignore[no-any-return]
        "GET", f"/api/setup/delegates/{delegate_id}/profile-result")


def test_profile_runs_at_start_on_change_and_is_removed(
    manager: Manager, delegates: Start, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.txt"
    manager.api("PUT", "/api/setup/profiles/tools",
                {"name": "tools", "script": f"echo v1 >> {runs}; echo installed v1; echo warn >&2"})
    manager.api("PUT", "/api/setup/groups/test-group/profile", {"profileId": "tools"})
    proc = delegates("d1", DELEGATE_PROFILE_INTERVAL_S="0.5", LOG_LEVEL="DEBUG")
    delegate_id = proc.wait_event("manager.registered")["delegate_id"]
    first = wait_until(lambda: result(manager, delegate_id), 15, "first profile result")
    assert first["error"] is False
    assert first["output"] == "installed v1\nERROR: warn"
    work = tmp_path / "d1"
    assert "installed v1" in (work / "profile.result").read_text()
    assert '"tools"' in (work / "profile").read_text()

    # unchanged: not run again
    proc.wait_event("profile.applied")
    wait_until(lambda: len(proc.find("profile.unchanged", profile_id="tools")) >= 3, 15,
               "three more checks answered 'unchanged'")
    assert runs.read_text().split() == ["v1"]

    manager.api("PUT", "/api/setup/profiles/tools",
                {"name": "tools", "script": f"echo v2 >> {runs}; echo broken; exit 5"})
    second = wait_until(lambda: (r := result(manager, delegate_id)) and r["output"] == "broken"
                        and r, 15, "second profile result")
    assert second["error"] is True
    assert runs.read_text().split() == ["v1", "v2"]

    manager.api("PUT", "/api/setup/groups/test-group/profile", {"profileId": None})
    wait_until(lambda: not (work / "profile").exists(), 15, "profile files deleted")
    assert not (work / "profile.result").exists()


def test_init_script_runs_once_before_registering(manager: Manager, delegates: Start,
                                                  tmp_path: Path) -> None:
    marker = tmp_path / "init.txt"
    proc = delegates("d1", INIT_SCRIPT=f"echo ran >> {marker}")
    proc.wait_event("manager.registered")
    assert marker.read_text().split() == ["ran"]
    events = [e["event"] for e in proc.events]
    assert events.index("init_script.done") < events.index("manager.registered")
