"""Which process runs which task, on disk, so that a restarted delegate can hand back what died.

`<work dir>/running/<taskId>.json` = {pid, process start time, instance id}, written when the task
is acquired and removed once its result is in the spool. A process that starts finds the files of
processes that are gone (a SIGKILL, an OOM kill, a crash): those tasks run nowhere any more, so it
hands each back to the manager at once (a RETRY_ON_OTHER_DELEGATE result in the name of the dead
process), instead of leaving the manager to notice after its orphan threshold. A file whose process
still runs (the old delegate during an upgrade, sharing the work dir) is left alone. The dead
process's journal (`<taskId>.log`, see `journal`) goes with the hand-back, so the lines recording
its changes in AWS reach the task's log even if it died before shipping them.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from delegate import files, log
from delegate.tasks.journal import Journal
from protocol import wire

if TYPE_CHECKING:
    from delegate.tasks.spool import ResultSender, ResultSpool

_log = log.get("delegate.tasks.claims")


@dataclass(frozen=True)
class Abandoned:
    task_id: str
    instance_id: str
    pid: int


def _started(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


class Claims:
    def __init__(self, work_dir: Path, instance_id: str) -> None:
        self.dir = files.private_dir(work_dir / "running")
        self._instance_id = instance_id
        self._pid = os.getpid()
        self._started = _started(self._pid)

    def _path(self, task_id: str) -> Path:
        return self.dir / f"{task_id}.json"

    def hold(self, task_id: str) -> None:
        record = {"pid": self._pid, "started": self._started, "instance": self._instance_id}
        tmp = self._path(task_id).with_suffix(".tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, self._path(task_id))

    def journal(self, task_id: str) -> Journal:
        return Journal(self.dir, task_id)

    def drop(self, task_id: str) -> None:
        """The task's result is in the spool: its journal and its claim go (in that order)."""
        self.journal(task_id).remove()
        self._path(task_id).unlink(missing_ok=True)

    def abandoned(self) -> list[Abandoned]:
        """Tasks held by processes that no longer run (their files are removed)."""
        found = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                pid, started, instance = int(record["pid"]), record.get("started"), str(record["instance"])
            except (OSError, ValueError, KeyError, TypeError):
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            if instance == self._instance_id:
                continue
            alive = _started(pid)
            if alive is not None and (started is None or abs(alive - float(started)) < 1.0):
                continue  # that process still runs it
            found.append(Abandoned(path.stem, instance, pid))
        return found

    def hand_back_abandoned(self, account_id: str, spool: ResultSpool, sender: ResultSender) -> None:
        """Each abandoned task without a result of its own goes back to the manager at once, as a
        RETRY_ON_OTHER_DELEGATE result of the dead process (which the manager then excludes, not
        this one)."""
        for gone in self.abandoned():
            if spool.read(gone.task_id) is None:
                lines = self.journal(gone.task_id).read()
                result = wire.TaskResult(
                    account_id=account_id, response_code=wire.ResponseCode.RETRY_ON_OTHER_DELEGATE,
                    response={"status": wire.TaskStatus.FAILED.value,
                              "errorMessage": f"the delegate process running it (pid {gone.pid}) died; "
                                              "handed back"},
                    delegate_instance_id=gone.instance_id)
                spool.write(gone.task_id, result, lines)  # its journal's lines go first
                sender.submit(gone.task_id)
                _log.warning("task.handed_back_abandoned", task_id=gone.task_id, pid=gone.pid,
                             journal_lines=len(lines))
            self.drop(gone.task_id)
