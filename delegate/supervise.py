"""Named, kept, supervised background tasks.

Every long-lived coroutine of the agent is started here under a name. If one of them ends on its own
(crash or unexpected return), `wait_first_exit` returns it so that the agent shuts down cleanly
instead of limping on while /health says OK.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from delegate import log

_log = log.get("delegate.supervise")


class Supervisor:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    def start(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        if name in self._tasks and not self._tasks[name].done():
            raise RuntimeError(f"task {name!r} is already running")
        task = asyncio.create_task(coro, name=name)
        self._tasks[name] = task
        return task

    async def wait_first_exit(self, stop: asyncio.Event) -> asyncio.Task[Any] | None:
        """Wait until `stop` is set (-> None) or a supervised task ends (-> that task)."""
        stopper = asyncio.create_task(stop.wait(), name="supervise.stop")
        try:
            done, _ = await asyncio.wait(
                [stopper, *self._tasks.values()], return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopper.cancel()
        for task in done:
            if task is not stopper:
                return task
        return None

    async def cancel_all(self, reason: str, timeout_s: float = 2.0) -> None:
        live = [t for t in self._tasks.values() if not t.done()]
        for task in live:
            task.cancel(reason)
        if live:
            _, pending = await asyncio.wait(live, timeout=timeout_s)
            for task in pending:
                _log.warning("supervise.cancel_timeout", task=task.get_name())
        for task in live:
            if task.done() and not task.cancelled() and task.exception() is not None:
                _log.debug("supervise.task_error_on_cancel", task=task.get_name(),
                           error=repr(task.exception()))
