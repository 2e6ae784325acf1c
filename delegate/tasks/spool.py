"""The result spool: a result is on disk before it is sent, and leaves only once the manager has it.

`<work dir>/spool/results/<taskId>.json`, written atomically, holds the result and any log lines the
manager has not confirmed yet (they are sent first, so a task's log is complete when it is final).
The sender retries a result until the manager confirms it (2xx) or refuses it for good (4xx: the
task is not ours any more). Results left by a previous process (a crash, an upgrade) are sent when
the next one starts, so neither a manager outage nor a delegate restart loses one; the manager
applies a repeat at most once.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

from delegate import log, retry
from delegate.client import ManagerClient
from delegate.errors import ManagerRejected, PermanentError, TransientError
from delegate.identity import Registration
from protocol import wire

_log = log.get("delegate.tasks.spool")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")

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
    def __init__(self, work_dir: Path) -> None:
        self.dir = work_dir / "spool" / "results"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, task_id: str) -> Path:
        if not _SAFE_ID.match(task_id):
            raise ValueError(f"task id {task_id[:40]!r} is not a safe file name")
        return self.dir / f"{task_id}.json"

    def write(self, task_id: str, result: wire.TaskResult,
              log_lines: list[wire.LogLine] | None = None) -> None:
        path = self._path(task_id)
        tmp = path.with_suffix(".tmp")
        record = SpooledResult(result=result, log_lines=log_lines or [])
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(record.model_dump_json(by_alias=True, exclude_none=True))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

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
            try:
                if older_than_s <= 0 or path.stat().st_mtime <= cutoff:
                    found.append(path.stem)
            except FileNotFoundError:
                continue  # sent and removed meanwhile
        return sorted(found)


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
