"""The result spool: a result is on disk before it is sent, and leaves only once the manager has it.

`<work dir>/spool/results/<taskId>.json`, written atomically, holds the result and any log lines the
manager has not confirmed yet (they are sent first, so a task's log is complete when it is final).
The sender retries a result until the manager confirms it (2xx) or refuses it for good (4xx: the
task is not ours any more). Results left by a previous process (a crash, an upgrade) are sent when
the next one starts, so neither a manager outage nor a delegate restart loses one; the manager
applies a repeat at most once.

The spool is bounded: a record keeps at most `MAX_RECORD_LOG_BYTES` of log lines (the oldest go
first, and a line says how many), and when all records together pass `MAX_SPOOL_BYTES` the oldest
records lose their log lines (again with a line saying so) before any result would: results are
small and are what the manager needs. Files are 0600 in a 0700 directory.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from delegate import files, log, retry
from delegate.client import ManagerClient
from delegate.errors import ManagerRejected, PermanentError, TransientError
from delegate.identity import Registration
from protocol import wire

_log = log.get("delegate.tasks.spool")
_SAFE_ID = re.compile(wire.ID_PATTERN)
MAX_RECORD_LOG_BYTES = 1_048_576
MAX_SPOOL_BYTES = 32 * 1_048_576

#: one sending round; a result the manager could not take in it stays spooled and goes back in the
#: queue after `PARK_S`, so an outage of any length loses nothing and never spins
SEND_POLICY = retry.RetryPolicy(
    initial_s=0.2, max_backoff_s=5.0, max_attempts=None, max_total_s=60.0,
    retry_on=(TransientError,),
)
PARK_S = 5.0


class SpooledResult(wire.WireModel):
    result: wire.TaskResult
    log_lines: list[wire.LogLine] = []


class ResultSpool:
    def __init__(self, work_dir: Path, max_bytes: int = MAX_SPOOL_BYTES,
                 max_record_log_bytes: int = MAX_RECORD_LOG_BYTES) -> None:
        self.dir = files.private_dir(files.private_dir(work_dir / "spool") / "results")
        self.max_bytes = max_bytes
        self.max_record_log_bytes = max_record_log_bytes

    def _path(self, task_id: str) -> Path:
        if not _SAFE_ID.match(task_id):
            raise ValueError(f"task id {task_id[:40]!r} is not a safe file name")
        return self.dir / f"{task_id}.json"

    def write(self, task_id: str, result: wire.TaskResult,
              log_lines: list[wire.LogLine] | None = None) -> None:
        path = self._path(task_id)
        lines = keep_newest(log_lines or [], self.max_record_log_bytes, "spool limit")
        record = SpooledResult(result=result, log_lines=lines)
        files.write_private(path, record.model_dump_json(by_alias=True, exclude_none=True),
                            sync=True)
        self._trim(keep=path)

    def _trim(self, keep: Path) -> None:
        """Over MAX_SPOOL_BYTES: strip the log lines of the oldest records, never a result."""
        entries = []
        for path in self.dir.glob("*.json"):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            entries.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                return
            if path == keep:
                continue
            record = self.read(path.stem)
            if record is None or not record.log_lines:
                continue
            note = _note(len(record.log_lines), "spool full", record.log_lines[-1].seq + 1)
            trimmed = SpooledResult(result=record.result, log_lines=[note])
            text = trimmed.model_dump_json(by_alias=True, exclude_none=True)
            files.write_private(path, text, sync=True)
            total -= size - len(text)
            _log.warning("spool.log_dropped", task_id=path.stem, lines=len(record.log_lines))

    def read(self, task_id: str) -> SpooledResult | None:
        try:
            return SpooledResult.model_validate_json(self._path(task_id).read_bytes())
        except FileNotFoundError:
            return None
        except ValueError:
            _log.error("spool.corrupt", task_id=task_id)
            self.remove(task_id)
            return None

    def remove(self, task_id: str) -> None:
        self._path(task_id).unlink(missing_ok=True)

    def pending(self, older_than_s: float = 0.0) -> list[str]:
        """Spooled task ids; with `older_than_s`, only files written at least that long ago."""
        cutoff = time.time() - older_than_s
        found = []
        for path in self.dir.glob("*.json"):
            if not _SAFE_ID.match(path.stem):
                continue  # not a file this spool wrote
            try:
                if older_than_s <= 0 or path.stat().st_mtime <= cutoff:
                    found.append(path.stem)
            except FileNotFoundError:
                continue  # sent and removed meanwhile
        return sorted(found)


def keep_newest(lines: list[wire.LogLine], max_bytes: int, why: str) -> list[wire.LogLine]:
    """The newest lines that fit in `max_bytes` of message text, after a line saying how many of
    the oldest were dropped (if any were)."""
    size = 0
    kept = 0
    for line in reversed(lines):
        size += len(line.message.encode("utf-8")) + 64
        if size > max_bytes:
            break
        kept += 1
    if kept == len(lines):
        return lines
    dropped = len(lines) - kept
    newest = lines[len(lines) - kept:]
    first_seq = newest[0].seq if newest else lines[-1].seq + 1
    return [_note(dropped, why, first_seq - 1), *newest]


def _note(count: int, why: str, seq: int) -> wire.LogLine:
    return wire.LogLine(seq=seq, ts=int(time.time() * 1000), level="WARN",
                        message=f"[{count} log lines dropped: {why}]")


class ResultSender:
    """Sends spooled results, a bounded number at a time, until each is confirmed."""

    def __init__(self, client: ManagerClient, spool: ResultSpool, registration: Registration,
                 parallel: int = 16) -> None:
        self._client = client
        self.spool = spool
        self._spool = spool
        self._registration = registration
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._parallel = parallel
        self.unsent: set[str] = set(spool.pending())
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, task_id: str) -> None:
        """The result is already in the spool; send it."""
        self.unsent.add(task_id)
        self._idle.clear()
        self._queue.put_nowait(task_id)

    async def run(self) -> None:
        for task_id in sorted(self.unsent):
            self._queue.put_nowait(task_id)
        if self.unsent:
            self._idle.clear()
            _log.info("spool.resending", count=len(self.unsent))
        async with asyncio.TaskGroup() as group:
            for i in range(self._parallel):
                group.create_task(self._worker(), name=f"results.sender{i}")
            group.create_task(self._rescan(), name="results.rescan")

    async def _rescan(self, every_s: float = 2.0) -> None:
        """Pick up results another process left in the shared work dir (an upgrade's old delegate
        that exited before the manager took them), so they do not wait for the next restart."""
        while True:
            await asyncio.sleep(every_s)
            found = await asyncio.to_thread(self._spool.pending, every_s)
            for task_id in found:
                if task_id not in self.unsent:
                    _log.info("spool.adopted", task_id=task_id)
                    self.submit(task_id)

    async def _worker(self) -> None:
        while True:
            task_id = await self._queue.get()
            try:
                await self._send(task_id)
            finally:
                self._queue.task_done()
                if not self.unsent:
                    self._idle.set()

    async def _send(self, task_id: str) -> None:
        record = await asyncio.to_thread(self._spool.read, task_id)
        if record is None:
            self.unsent.discard(task_id)
            return
        result = record.result
        delegate_id = (await self._registration.wait()).delegate_id
        lines = record.log_lines

        async def attempt() -> None:
            nonlocal lines
            while lines:  # the log first, so that a final task has its whole log
                await self._client.send_logs(delegate_id, task_id, wire.LogBatch(lines=lines[:500]))
                lines = lines[500:]
            meta = await self._client.send_result(delegate_id, task_id, result)
            _log.info(
                "task.result_sent", task_id=task_id, status=result.response.get("status"),
                duplicate=bool(meta.get("duplicate")),
            )

        try:
            await retry.call("task.result", attempt, SEND_POLICY)
        except TransientError as exc:
            _log.warning("task.result_deferred", task_id=task_id, error=str(exc), retry_in_s=PARK_S)
            self._park(task_id)
            return
        except ManagerRejected as exc:
            _log.warning("task.result_refused", task_id=task_id, error=str(exc))
        except PermanentError as exc:
            _log.error("task.result_refused", task_id=task_id, error=str(exc))
        await asyncio.to_thread(self._spool.remove, task_id)
        self.unsent.discard(task_id)

    def _park(self, task_id: str) -> None:
        """Back in the queue after a pause (still in `unsent`, so still reported as executing)."""
        asyncio.get_running_loop().call_later(PARK_S, self._queue.put_nowait, task_id)

    async def wait_idle(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True
