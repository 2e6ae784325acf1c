"""Running one task's handler: decode its package, run the handler under the task's timeout plus a
grace, and turn whatever happens into an outcome and the response code for the manager. A bad task,
or a handler that raises, fails that task only.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from delegate import log
from delegate.errors import DelegateError, TaskError
from delegate.proxy import ProxyRules
from delegate.tasks.package import decode
from delegate.tasks.registry import TaskContext, TaskLog, TaskOutcome
from protocol import wire

_log = log.get("delegate.tasks.handle")


async def run_handler(
    package: wire.DelegateTaskPackage, shipper: TaskLog, timeout_s: float, grace_s: float,
    work_dir: Path, proxy: ProxyRules,
) -> tuple[TaskOutcome, wire.ResponseCode]:
    try:
        kind, data = decode(package)
    except TaskError as exc:
        shipper.error(str(exc))
        return TaskOutcome(wire.TaskStatus.ERRORED, {}, str(exc)), wire.ResponseCode.FAILED
    ctx = TaskContext(task_id=package.delegate_task_id, account_id=package.account_id,
                      timeout_s=timeout_s, log=shipper, work_dir=work_dir, proxy=proxy)
    try:
        async with asyncio.timeout(timeout_s + grace_s):
            outcome = await kind.handler(ctx, data)
    except TimeoutError:
        message = f"task exceeded its timeout of {timeout_s:.0f}s and was cancelled"
        shipper.error(message)
        return TaskOutcome(wire.TaskStatus.EXPIRED, {}, message), wire.ResponseCode.FAILED
    except TaskError as exc:
        shipper.error(str(exc))
        return TaskOutcome(wire.TaskStatus.ERRORED, {}, str(exc)), wire.ResponseCode.FAILED
    except DelegateError as exc:
        shipper.error(str(exc))
        return TaskOutcome(wire.TaskStatus.FAILED, {}, str(exc)), wire.ResponseCode.OK
    except Exception as exc:  # noqa: BLE001 - a handler bug fails its task only
        _log.exception("task.handler_crashed", task_type=package.task_type)
        message = f"internal error in {package.task_type}: {type(exc).__name__}: {exc}"
        shipper.error(message)
        return TaskOutcome(wire.TaskStatus.FAILED, {}, message), wire.ResponseCode.OK
    return outcome, wire.ResponseCode.OK
