"""The task's journal: log lines that record a change in AWS, on disk before the executor goes on.

`<work dir>/running/<taskId>.log` (0600) holds one JSON log line per line, appended and fsynced
when an executor writes a change line (`TaskLog.change`: a task definition registered, a service
created, updated or deleted, auto scaling suspended or resumed). The lines are also shipped as
usual; the journal only matters if the process dies before they are: a restarted delegate sends
what the journal holds with the dead process's hand-back (`claims.Claims.hand_back_abandoned`),
and the manager stores a line sent twice once (lines keep their sequence numbers). The journal is
removed once the task's result, with its unsent lines, is in the result spool.
"""

from __future__ import annotations

import os
from pathlib import Path

from delegate import log
from protocol import wire

_log = log.get("delegate.tasks.journal")


class Journal:
    def __init__(self, directory: Path, task_id: str) -> None:
        self.path = directory / f"{task_id}.log"

    def append(self, line: wire.LogLine) -> None:
        """The line is on disk (fsynced) when this returns; a disk error is logged, never raised
        (the line is still shipped)."""
        data = (line.model_dump_json(by_alias=True, exclude_none=True) + "\n").encode("utf-8")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            _log.error("task.journal_failed", path=self.path.name, error=str(exc))

    def read(self) -> list[wire.LogLine]:
        """The lines on disk; a line torn by the crash (the last, half written) is skipped."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        lines = []
        for raw in text.splitlines():
            try:
                lines.append(wire.LogLine.model_validate_json(raw))
            except ValueError:
                continue
        return lines

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
