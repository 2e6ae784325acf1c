"""Under the real watcher, a hostile manager's worst answers never cost a restart, let alone FATAL."""

from __future__ import annotations

import sys

import pytest

from tests.hostile.conftest import Delegates, still_serving
from tests.hostile.scripted import HostileManager
from tests.hostile.test_answers import BAD_FRAMES

pytestmark = pytest.mark.timeout(90)


def test_bad_frames_never_restart_the_delegate(hostile: HostileManager,
                                               delegates: Delegates) -> None:
    watcher = delegates.start(
        "w1", command=[sys.executable, "-m", "watcher"],
        WATCHER_HEARTBEAT_INTERVAL_S="0.5", WATCHER_HEARTBEAT_TIMEOUT_S="3",
        WATCHER_START_TIMEOUT_S="20", WATCHER_READY_TIMEOUT_S="15",
        WATCHER_DELEGATE_COMMAND=f"{sys.executable} -m delegate",
    )
    watcher.wait_event("delegate.state", to="RUNNING", timeout=30)
    for _ in range(3):
        hostile.push(*BAD_FRAMES)
        still_serving(watcher, hostile)
    states = [e.get("to") for e in watcher.find("delegate.state")]
    assert "FATAL" not in states and "BACKOFF" not in states, states
    assert states.count("RUNNING") == 1, f"the delegate was restarted: {states}"
