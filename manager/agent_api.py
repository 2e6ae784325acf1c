"""The agent API handlers (`/api/agent/...`): thin adapters from HTTP to `Manager`.

Every handler first checks the delegate token (401 otherwise); every call for one delegate also
checks that delegate's connection credential (`manager.identity`: 403 otherwise, 409 for new work
from a superseded connection). Bodies are parsed with the shared `protocol.wire` models (400 naming
the field); answers are in the envelope.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from manager import db
from manager.core import MANAGER, Manager
from manager.dispatch import matches
from manager.envelope import ApiError, ok, read_model
from manager.tasks import target
from protocol.wire import (
    CapabilityReport,
    ConnectionSupersededEvent,
    DelegateHeartbeatResponse,
    DelegateParams,
    DelegateRegisterResponse,
    DelegateUnregisterRequest,
    LogBatch,
    RegisterAction,
    TaskEventsResponse,
    TaskResult,
)

log = structlog.get_logger("manager")


def _manager(request: web.Request) -> Manager:
    manager = request.app[MANAGER]
    manager.auth.check_request(request)
    return manager


def _check_account(manager: Manager, account_id: str) -> None:
    if account_id != manager.account.account_id:
        raise ApiError(400, "INVALID_REQUEST",
                       f"field 'accountId': {account_id!r} is not this manager's account")


async def register(request: web.Request) -> web.Response:
    manager = _manager(request)
    params = await read_model(request, DelegateParams)
    _check_account(manager, params.account_id)
    if manager.delegates.is_deleted(params):
        log.info("delegate.self_destruct_sent", delegate_id=params.delegate_id)
        return ok(DelegateRegisterResponse(delegate_id=params.delegate_id or "",
                                           action=RegisterAction.SELF_DESTRUCT))
    now = db.now_ms()
    rec = manager.delegates.register(params, now)
    token_name = manager.auth.token_name(request)
    secret, older = manager.connections.register(
        rec.delegate_id, manager.connections.presented(request), token_name=token_name,
        instance_id=params.delegate_instance_id, now=now)
    if older:
        await manager.hub.send(rec.delegate_id,
                               ConnectionSupersededEvent(delegate_id=rec.delegate_id).dump())
        await manager.hub.close(rec.delegate_id, "superseded by a newer connection")
    manager.tasks.touch_listed(rec.delegate_id, params.currently_executing_delegate_tasks,
                               rec.last_heartbeat)
    return ok(DelegateRegisterResponse(
        delegate_id=rec.delegate_id,
        sequence_num=str(rec.seq) if rec.seq is not None else None,
        delegate_random_token=rec.random_token, delegate_connection_id=secret,
        delegate_token_name=token_name))


async def unregister(request: web.Request) -> web.Response:
    manager = _manager(request)
    body = await read_model(request, DelegateUnregisterRequest)
    manager.connections.check_current(request, body.delegate_id)  # not a superseded process
    manager.delegates.unregister(body.delegate_id)
    await manager.hub.close(body.delegate_id, "unregistered")
    return ok()


async def heartbeat(request: web.Request) -> web.Response:
    manager = _manager(request)
    params = await read_model(request, DelegateParams)
    _check_account(manager, params.account_id)
    if not params.delegate_id:
        raise ApiError(400, "INVALID_REQUEST", "field 'delegateId' is required; register first")
    manager.delegates.require(params.delegate_id)  # 404 first: a deleted delegate re-registers
    manager.connections.check(request, params.delegate_id)
    rec = manager.heartbeat(params)
    return ok(DelegateHeartbeatResponse(
        delegate_id=rec.delegate_id, delegate_random_token=rec.random_token,
        sequence_number=str(rec.seq) if rec.seq is not None else None))


async def task_events(request: web.Request) -> web.Response:
    manager = _manager(request)
    rec = manager.delegates.require(request.match_info["delegateId"])
    manager.connections.check_current(request, rec.delegate_id)
    events = manager.pending_events(rec)
    return ok({"delegateTaskEvents": TaskEventsResponse.model_validate(
        {"delegateTaskEvents": events}).dump()["delegateTaskEvents"]})


async def acquire(request: web.Request) -> web.Response:
    manager = _manager(request)
    delegate_id, task_id = request.match_info["delegateId"], request.match_info["taskId"]
    rec = manager.delegates.require(delegate_id)
    manager.connections.check_current(request, delegate_id)
    row = manager.tasks.require(task_id)
    if not matches(rec, target(row)):
        raise ApiError(409, "DELEGATE_NOT_ELIGIBLE",
                       f"delegate {delegate_id} may not take task {task_id} (selectors, group, "
                       "task type, or it was excluded)")
    instance_id = request.query.get("delegateInstanceId") or rec.instance_id
    pkg = manager.tasks.acquire(row, delegate_id, instance_id, db.now_ms())
    return ok(pkg)


async def report(request: web.Request) -> web.Response:
    manager = _manager(request)
    delegate_id, task_id = request.match_info["delegateId"], request.match_info["taskId"]
    manager.delegates.require(delegate_id)
    manager.connections.check_current(request, delegate_id)
    body = await read_model(request, CapabilityReport)
    row = manager.tasks.require(task_id)
    return ok(manager.tasks.report(row, delegate_id, body, db.now_ms()))


async def logs(request: web.Request) -> web.Response:
    manager = _manager(request)
    delegate_id, task_id = request.match_info["delegateId"], request.match_info["taskId"]
    manager.connections.check(request, delegate_id)
    body = await read_model(request, LogBatch)
    row = manager.tasks.require(task_id)
    stored = manager.tasks.add_logs(row, delegate_id, body.lines)
    return ok(meta={"stored": stored})


async def result(request: web.Request) -> web.Response:
    manager = _manager(request)
    delegate_id, task_id = request.match_info["delegateId"], request.match_info["taskId"]
    manager.connections.check(request, delegate_id)
    body = await read_model(request, TaskResult)
    _check_account(manager, body.account_id)
    row = manager.tasks.require(task_id)
    meta, requeued = manager.tasks.apply_result(row, delegate_id, body, db.now_ms())
    if requeued:
        await manager.requeued(task_id)
    return ok(meta=meta)


def add_routes(app: web.Application) -> None:
    base = "/api/agent"
    app.router.add_post(f"{base}/delegates/register", register)
    app.router.add_post(f"{base}/delegates/unregister", unregister)
    app.router.add_post(f"{base}/delegates/heartbeat-with-polling", heartbeat)
    app.router.add_get(f"{base}/delegates/{{delegateId}}/task-events", task_events)
    app.router.add_put(f"{base}/delegates/{{delegateId}}/tasks/{{taskId}}/acquire", acquire)
    app.router.add_post(f"{base}/delegates/{{delegateId}}/tasks/{{taskId}}/report", report)
    app.router.add_post(f"{base}/delegates/{{delegateId}}/tasks/{{taskId}}/logs", logs)
    app.router.add_post(f"{base}/v2/tasks/{{taskId}}/delegates/{{delegateId}}", result)
