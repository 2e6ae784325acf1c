"""The task runner: takes offers from the manager, acquires each exactly once, runs it, reports it.

Offers arrive as `DelegateTaskEvent`s (stream or poll). The runner takes one only if it has capacity
(DELEGATE_TASK_CAPACITY) and resources (DELEGATE_RESOURCE_THRESHOLD), acquires it (one atomic call on
the manager; losing the race is normal and quiet), runs the capability checks when the task has any,
and runs the package only if it carries this process's instance id. A task runs under its timeout
plus a grace, is cancelled on abort, and whatever happens ends with exactly one result in the spool.
A bad task (unknown type, invalid data, a handler that raises) fails that task, never the delegate.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Sequence

import structlog

from delegate import log, retry
from delegate.client import ManagerClient
from delegate.config import Settings
from delegate.errors import DelegateError, ManagerRejected, ProtocolViolation
from delegate.identity import Identity, Registration
from delegate.metrics import AWS_CALLS, Metrics
from delegate.tasks import registry
from delegate.tasks.capabilities import assign_after_checks
from delegate.tasks.claims import Claims
from delegate.tasks.handle import run_handler
from delegate.tasks.logship import LogBudget, LogShipper
from delegate.tasks.package import mismatch
from delegate.tasks.registry import TaskOutcome
from delegate.tasks.resources import ResourceGuard
from delegate.tasks.spool import ResultSender
from protocol import wire

_log = log.get("delegate.tasks.runner")

#: after the task's own timeout, how long the runner waits before it cancels the handler
TIMEOUT_GRACE_S = 30.0
#: task ids this process ran, remembered after they finish so that a replayed offer is ignored
#: (bounded: the oldest are forgotten). Offers it only tried to acquire are not remembered: a task
#: another delegate won, or that failed to acquire, is taken again when the manager offers it again
#: after a re-queue.
_RECENT = 4096


class TaskRunner:
    def __init__(
        self,
        settings: Settings,
        client: ManagerClient,
        metrics: Metrics,
        registration: Registration,
        sender: ResultSender,
    ) -> None:
        self._s = settings
        self._client = client
        self._metrics = metrics
        self._registration = registration
        self._instance_id = registration.instance_id
        self._capacity = settings.delegate_task_capacity
        self._log_budget = LogBudget()
        self._resources = ResourceGuard(settings.delegate_resource_threshold)
        self._spool = sender.spool
        self._sender = sender
        #: set when an offer was refused for want of room and there is room again (the stream
        #: then asks the manager for queued work)
        self.work_wanted = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._aborted: set[str] = set()
        self._accepting = True
        self._missed_offer = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.grace_s = TIMEOUT_GRACE_S
        registry.load_builtin_types()
        self._claims = Claims(settings.delegate_work_dir, self._instance_id)
        self._claims.hand_back_abandoned(settings.account_id, self._spool, self._sender)


    # --- what the connection asks of us --------------------------------------------------------

    def supported_task_types(self) -> list[str]:
        return registry.names()

    def executing(self) -> list[str]:
        """Running tasks and results not yet confirmed: the manager keeps all of them alive."""
        return sorted(set(self._inflight) | self._sender.unsent)

    def on_events(self, events: Sequence[wire.DelegateTaskEvent | wire.DelegateTaskAbortEvent],
                  source: str) -> None:
        for event in events:
            if isinstance(event, wire.DelegateTaskAbortEvent):
                self._abort(event.delegate_task_id)
            else:
                self._offer(event, source)

    # --- accepting work ------------------------------------------------------------------------

    def stop_acquiring(self) -> None:
        if self._accepting:
            self._accepting = False
            _log.info("tasks.stop_acquiring", running=len(self._inflight))

    def resume(self) -> None:
        if not self._accepting:
            self._accepting = True
            _log.info("tasks.resume")

    @property
    def accepting(self) -> bool:
        return self._accepting

    def _refuse(self, reason: str) -> None:
        self._metrics.tasks_refused.labels(reason=reason).inc()
        self._missed_offer = True

    def _offer(self, event: wire.DelegateTaskEvent, source: str) -> None:
        task_id = event.delegate_task_id
        if task_id in self._inflight or task_id in self._recent:
            return
        if not self._accepting:
            self._refuse("draining")
            return
        if self._capacity is not None and len(self._inflight) >= self._capacity:
            self._refuse("capacity")
            return
        if event.task_type and event.task_type not in registry.names():
            # not ours to run; another delegate may support it
            self._metrics.tasks_refused.labels(reason="unsupported").inc()
            return
        over = self._resources.over()
        if over is not None:
            self._refuse("resources")
            _log.warning("task.refused_resources", task_id=task_id, reason=over)
            return
        self._idle.clear()
        self._inflight[task_id] = asyncio.create_task(
            self._acquire_and_run(task_id, source), name=f"task.{task_id}"
        )

    def _abort(self, task_id: str) -> None:
        task = self._inflight.get(task_id)
        if task is not None and not task.done():
            _log.info("task.abort_requested", task_id=task_id)
            self._aborted.add(task_id)
            task.cancel("aborted by the manager")

    # --- one task ------------------------------------------------------------------------------

    async def _acquire_and_run(self, task_id: str, source: str) -> None:
        structlog.contextvars.bind_contextvars(task_id=task_id)
        AWS_CALLS.set(self._metrics.aws_calls)  # this task's context only (delegate/metrics.py)
        ran = False
        try:
            who = await self._registration.wait()
            package = await self._acquire(who, task_id)
            if package is None:
                return
            ran = True
            await asyncio.to_thread(self._claims.hold, task_id)
            self._metrics.tasks_running.inc()
            try:
                _log.info("task.acquired", task_type=package.task_type, source=source)
                await self._execute(who, package)
            finally:
                self._metrics.tasks_running.dec()
        except asyncio.CancelledError:
            if task_id in self._aborted or not self._accepting:
                return  # result written by _execute, or shutdown
            raise
        except Exception as exc:  # noqa: BLE001 - one task must never take the delegate down
            _log.exception("task.internal_error", error=repr(exc))
        finally:
            self._inflight.pop(task_id, None)
            if ran:
                self._remember(task_id)
            self._aborted.discard(task_id)
            if not self._inflight:
                self._idle.set()
            if self._missed_offer and self._accepting:
                self._missed_offer = False
                self.work_wanted.set()

    def _remember(self, task_id: str) -> None:
        self._recent[task_id] = None
        while len(self._recent) > _RECENT:
            self._recent.popitem(last=False)

    async def _acquire(self, who: Identity, task_id: str) -> wire.DelegateTaskPackage | None:
        try:
            package = await retry.call(
                "task.acquire", lambda: self._client.acquire(who, task_id), retry.QUICK
            )
        except ProtocolViolation as exc:
            self._remember(task_id)
            await self._finish(task_id, TaskOutcome(wire.TaskStatus.ERRORED, {}, str(exc)),
                               wire.ResponseCode.FAILED)
            return None
        except ManagerRejected as exc:
            _log.debug("task.not_acquired", code=exc.code, status=exc.status)
            return None
        except DelegateError as exc:
            _log.warning("task.acquire_failed", error=str(exc))
            return None
        if package.delegate_instance_id is None and package.capabilities:
            validated = await assign_after_checks(self._client, who, task_id, package,
                                                  self._s.proxy_rules())
            if validated is None:
                return None
            package = validated
        if package.delegate_instance_id != self._instance_id:
            _log.info("task.not_ours", assigned_to=package.delegate_instance_id)
            return None
        wrong = mismatch(task_id, self._s.account_id, who.delegate_id, package)
        if wrong is not None:
            _log.warning("task.package_refused", reason=wrong)
            await self._finish(task_id, TaskOutcome(wire.TaskStatus.ERRORED, {}, wrong),
                               wire.ResponseCode.FAILED)
            return None
        return package

    async def _execute(self, who: Identity, package: wire.DelegateTaskPackage) -> None:
        task_id = package.delegate_task_id
        shipper = LogShipper(self._client, who.delegate_id, task_id, self._log_budget,
                             journal=self._claims.journal(task_id))
        started = time.monotonic()
        timeout_s = max(package.timeout_ms / 1000.0, 0.001)
        outcome: TaskOutcome
        code = wire.ResponseCode.OK
        try:
            outcome, code = await run_handler(package, shipper, timeout_s, self.grace_s,
                                              self._s.delegate_work_dir, self._s.proxy_rules())
        except asyncio.CancelledError:
            if task_id in self._aborted:
                shipper.warn("task aborted by the manager")
                outcome, code = TaskOutcome(wire.TaskStatus.ABORTED, {}, "aborted"), \
                    wire.ResponseCode.FAILED
            elif not self._accepting:
                # Shutdown past its drain budget: let another delegate run it.
                shipper.warn("delegate stopping; task handed back to the manager")
                outcome = TaskOutcome(wire.TaskStatus.FAILED, {}, "delegate shut down")
                code = wire.ResponseCode.RETRY_ON_OTHER_DELEGATE
            else:
                raise
        finally:
            elapsed = time.monotonic() - started
            self._metrics.task_seconds.labels(task_type=package.task_type).observe(elapsed)
        await asyncio.shield(self._close_and_finish(task_id, shipper, outcome, code))

    async def _close_and_finish(self, task_id: str, shipper: LogShipper, outcome: TaskOutcome,
                                code: wire.ResponseCode) -> None:
        unsent = await shipper.close()
        await self._finish(task_id, outcome, code, unsent)

    async def _finish(self, task_id: str, outcome: TaskOutcome, code: wire.ResponseCode,
                      log_lines: list[wire.LogLine] | None = None) -> None:
        if code == wire.ResponseCode.OK and outcome.status not in (
            wire.TaskStatus.SUCCEEDED, wire.TaskStatus.FAILED
        ):
            code = wire.ResponseCode.FAILED  # OK means "it ran": SUCCEEDED or FAILED only
        response = {**outcome.response, "status": outcome.status.value}
        if outcome.error_message:
            response["errorMessage"] = log.scrub(outcome.error_message)
        result = wire.TaskResult(account_id=self._s.account_id, response_code=code,
                                 response=response, delegate_instance_id=self._instance_id)
        await asyncio.to_thread(self._spool.write, task_id, result, log_lines)
        self._claims.drop(task_id)  # the journal first: its unsent lines are in the spool now
        self._sender.submit(task_id)
        self._metrics.tasks_finished.labels(status=outcome.status.value).inc()
        _log.info("task.finished", status=outcome.status.value, error=outcome.error_message)

    # --- shutdown ------------------------------------------------------------------------------

    async def drain(self, budget_s: float) -> bool:
        """Wait up to `budget_s` for running tasks; cancel the rest. True if all finished."""
        self.stop_acquiring()
        deadline = time.monotonic() + budget_s
        finished = True
        if self._inflight:
            _log.info("tasks.draining", running=len(self._inflight), budget_s=budget_s)
            try:
                await asyncio.wait_for(self._idle.wait(), budget_s)
            except TimeoutError:
                finished = False
                pending = list(self._inflight.values())
                _log.warning("tasks.drain_timeout", cancelling=len(pending))
                for task in pending:
                    task.cancel("delegate shutting down")
                await asyncio.wait(pending, timeout=5.0)
        remaining = max(deadline - time.monotonic(), 1.0)
        if not await self._sender.wait_idle(remaining):
            _log.warning("tasks.results_unsent", count=len(self._sender.unsent),
                         note="kept in the spool; sent by the next start")
        return finished
