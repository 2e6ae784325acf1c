"""Shipping a task's log to the manager in batches, with bounded memory.

Lines get a per-task sequence number, so a batch that is sent twice is stored once. Unsent lines
are bounded in bytes, per task (`MAX_TASK_LOG_BYTES`) and for all tasks together (`LogBudget`,
`MAX_TOTAL_LOG_BYTES`): a script that prints faster than a slow manager takes loses its oldest unsent
lines, and the next line sent says how many. Secrets are scrubbed from every line before it is queued.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time

from delegate import log, retry
from delegate.client import ManagerClient
from delegate.errors import DelegateError, ManagerRejected, TransientError
from delegate.tasks.journal import Journal
from delegate.tasks.registry import TaskLog
from protocol import wire

_log = log.get("delegate.tasks.logship")


class _NotYet(TransientError):
    """The manager could not take the log lines now; the final flush tries again."""

BATCH_LINES = 500
FLUSH_EVERY_S = 0.2
MAX_LINE_CHARS = 8_192
MAX_TASK_LOG_BYTES = 1_048_576
MAX_TOTAL_LOG_BYTES = 16 * 1_048_576
#: what one held line costs beyond its text (the LogLine object, the deque slot): an estimate
_LINE_OVERHEAD = 200


class LogBudget:
    """The bytes of unsent log lines held by all tasks together."""

    def __init__(self, max_bytes: int = MAX_TOTAL_LOG_BYTES) -> None:
        self.max_bytes = max_bytes
        self.used = 0


class LogShipper(TaskLog):
    def __init__(self, client: ManagerClient, delegate_id: str, task_id: str,
                 budget: LogBudget | None = None, max_bytes: int = MAX_TASK_LOG_BYTES,
                 journal: Journal | None = None) -> None:
        self._client = client
        self._delegate_id = delegate_id
        self._task_id = task_id
        self._pending: collections.deque[tuple[wire.LogLine, int]] = collections.deque()
        self._budget = budget or LogBudget()
        self._max_bytes = max_bytes
        self._journal = journal
        self._bytes = 0
        # Numbered from this delivery's start (ms x 1000), so that the lines of a re-delivered
        # task follow the first delivery's instead of colliding with them in the manager.
        self._seq = int(time.time() * 1000) * 1000
        self._dropped = 0
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self.lines_written = 0

    # --- TaskLog -------------------------------------------------------------------------------

    def info(self, message: str) -> None:
        self._add("INFO", message)

    def warn(self, message: str) -> None:
        self._add("WARN", message)

    def error(self, message: str) -> None:
        self._add("ERROR", message)

    def change(self, message: str) -> None:
        line = self._add("INFO", message)
        if self._journal is not None:
            self._journal.append(line)

    def _add(self, level: str, message: str) -> wire.LogLine:
        text = log.scrub(message[: MAX_LINE_CHARS * 2].rstrip("\n"))
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + " [line truncated]"
        size = len(text.encode("utf-8", errors="replace")) + _LINE_OVERHEAD
        while self._pending and (self._bytes + size > self._max_bytes
                                 or self._budget.used + size > self._budget.max_bytes):
            self._pop()
            self._dropped += 1
        self._seq += 1
        line = wire.LogLine(seq=self._seq - 1, ts=int(time.time() * 1000), level=level,
                            message=text)
        if self._budget.used + size > self._budget.max_bytes:
            self._dropped += 1  # other tasks hold the whole budget: this line cannot be kept
            return line
        self._pending.append((line, size))
        self._bytes += size
        self._budget.used += size
        self.lines_written += 1
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush_loop(), name=f"logship.{self._task_id}"
            )
        if len(self._pending) >= BATCH_LINES:
            self._wake.set()
        return line

    def _pop(self) -> wire.LogLine:
        line, size = self._pending.popleft()
        self._bytes -= size
        self._budget.used -= size
        return line

    def _mark_dropped(self) -> None:
        """Say on the oldest pending line how many lines before it were dropped."""
        if self._dropped and self._pending:
            note = f"[{self._dropped} log lines dropped: the task's log buffer was full]"
            self._dropped = 0
            first, size = self._pending[0]
            self._pending[0] = (first.model_copy(update={"message": f"{note} {first.message}"}),
                                size)

    # --- shipping ------------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_EVERY_S)
            self._wake.clear()
            await self._send_some()

    async def _send_some(self) -> bool:
        """Send what is pending in batches; False if the manager could not take them now."""
        while self._pending:
            self._mark_dropped()
            batch = [self._pending[i][0] for i in range(min(BATCH_LINES, len(self._pending)))]
            try:
                await self._client.send_logs(self._delegate_id, self._task_id,
                                             wire.LogBatch(lines=batch))
            except ManagerRejected as exc:
                _log.warning("task.log_rejected", task_id=self._task_id, error=str(exc))
                while self._pending:  # the manager will never take them (task gone)
                    self._pop()
                return True
            except DelegateError as exc:
                _log.debug("task.log_send_failed", task_id=self._task_id, error=str(exc))
                return False
            # lines may have been dropped from the front while the batch was in flight
            sent = {id(line) for line in batch}
            while self._pending and id(self._pending[0][0]) in sent:
                self._pop()
        return True

    async def _flush_or_raise(self) -> None:
        if not await self._send_some():
            raise _NotYet(f"task {self._task_id}: the manager did not take its log lines yet")

    async def close(self, budget_s: float = 5.0) -> list[wire.LogLine]:
        """Flush what is left within `budget_s`, stop the flusher; return lines still unsent
        (the runner spools them with the result, so they are not lost)."""
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        policy = retry.RetryPolicy(initial_s=0.1, max_backoff_s=2.0, max_attempts=None,
                                   max_total_s=budget_s, retry_on=(_NotYet,))
        if self._pending:
            with contextlib.suppress(_NotYet):
                await retry.call("task.log_flush", self._flush_or_raise, policy)
        self._mark_dropped()
        left = []
        while self._pending:
            left.append(self._pop())
        return left
