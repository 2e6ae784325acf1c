"""Which process runs which task: a starting delegate hands back only what a dead process held."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from delegate.tasks.claims import Claims
from protocol import wire


def test_a_dead_process_s_task_is_abandoned_and_a_live_one_s_is_not(tmp_path: Path) -> None:
    old = Claims(tmp_path, "old-instance")  # this very process: alive (an upgrade's old delegate)
    old.hold("live-task")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (tmp_path / "running" / "dead-task.json").write_text(json.dumps(
        {"pid": int(dead.stdout), "started": 1.0, "instance": "dead-instance"}))

    found = Claims(tmp_path, "new-instance").abandoned()

    assert [(a.task_id, a.instance_id) for a in found] == [("dead-task", "dead-instance")]


def test_a_reused_pid_does_not_pass_for_the_process_that_held_the_task(tmp_path: Path) -> None:
    # the pid is alive (ours) but started at another time: a different process got that pid
    (tmp_path / "running").mkdir()
    (tmp_path / "running" / "t1.json").write_text(json.dumps(
        {"pid": os.getpid(), "started": 1.0, "instance": "gone"}))
    assert [a.task_id for a in Claims(tmp_path, "new").abandoned()] == ["t1"]


def test_a_finished_task_leaves_no_claim(tmp_path: Path) -> None:
    claims = Claims(tmp_path, "i1")
    claims.hold("t1")
    claims.drop("t1")
    assert not list((tmp_path / "running").iterdir())
    assert Claims(tmp_path, "i2").abandoned() == []


def test_a_change_line_is_on_disk_private_when_logged_and_a_torn_tail_is_skipped(tmp_path: Path) -> None:
    journal = Claims(tmp_path, "i1").journal("t1")
    journal.append(wire.LogLine(seq=7, ts=1, message="updated service web to app:2"))
    assert journal.path.stat().st_mode & 0o777 == 0o600
    with journal.path.open("a", encoding="utf-8") as f:
        f.write('{"seq": 8, "ts": 1, "mess')  # the process died mid-write
    assert [(line.seq, line.message) for line in Claims(tmp_path, "i2").journal("t1").read()] == [
        (7, "updated service web to app:2")]
    Claims(tmp_path, "i2").drop("t1")
    assert not journal.path.exists(), "a finished task's journal goes with its claim"
