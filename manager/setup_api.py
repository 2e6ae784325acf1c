"""The setup API for people and scripts (`/api/setup/...`, `Authorization: Bearer <API key>`).

`GET /api/setup/tasks/{taskId}?sinceSeq=N` returns only log lines with `seq > N` (start with -1 or
leave it out); the answer's `nextSeq` is the value to pass next time.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from manager import db
from manager.auth import check_api_key
from manager.core import MANAGER, Manager
from manager.delegates import DelegateRecord
from manager.envelope import ApiError, ok, read_model
from manager.tasks import NewTask
from protocol.wire import MAX_TASK_DATA_BYTES, Capability, SelfDestructEvent, TaskStatus

NO_GROUP = ""


class SubmitTask(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    account_id: str | None = None
    task_type: str = Field(min_length=1)
    data: dict[str, Any] = Field(default_factory=dict)
    selectors: list[str] = Field(default_factory=list)
    delegate_group_name: str | None = None
    timeout_ms: int = Field(default=600_000, gt=0, le=7 * 24 * 3600 * 1000)
    capabilities: list[Capability] = Field(default_factory=list)
    requeue_on_delegate_loss: bool = True
    sync: bool = False


def _manager(request: web.Request, role: str = "viewer") -> Manager:
    manager = request.app[MANAGER]
    check_api_key(request, manager.people, manager.account, role)
    return manager


def delegate_view(manager: Manager, rec: DelegateRecord, now: int) -> dict[str, Any]:
    return {
        "delegateId": rec.delegate_id, "delegateName": rec.delegate_name,
        "hostName": rec.host_name, "sequenceNum": rec.seq, "version": rec.version,
        "watcherVersion": rec.watcher_version,
        "status": "CONNECTED" if manager.delegates.is_connected(rec, now) else "DISCONNECTED",
        "lastHeartBeat": rec.last_heartbeat, "tags": rec.tags,
        "pollingModeEnabled": rec.polling, "delegateType": rec.delegate_type,
        "groupName": rec.group_name or NO_GROUP, "streaming": manager.hub.has(rec.delegate_id),
        "ip": rec.ip, "tokenName": manager.connections.token_name_of(rec.delegate_id),
    }


def grouped(manager: Manager, now: int) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    manager.delegates.reload_all()  # replicas: delegates registered through the others too
    for rec in sorted(manager.delegates.by_id.values(), key=lambda r: r.host_name):
        groups.setdefault(rec.group_name or NO_GROUP, []).append(delegate_view(manager, rec, now))
    return [{"groupName": name, "delegates": groups[name]} for name in sorted(groups)]


async def list_delegates(request: web.Request) -> web.Response:
    manager = _manager(request)
    return ok({"groups": grouped(manager, db.now_ms())})


async def submit_task(request: web.Request) -> web.Response:
    manager = _manager(request, "deployer")
    body = await read_model(request, SubmitTask)
    if body.account_id and body.account_id != manager.account.account_id:
        raise ApiError(400, "INVALID_REQUEST",
                       f"field 'accountId': {body.account_id!r} is not this manager's account")
    size = len(db.to_json(body.data))
    if size > MAX_TASK_DATA_BYTES:
        raise ApiError(413, "PAYLOAD_TOO_LARGE",
                       f"field 'data' is {size} bytes, over the limit of {MAX_TASK_DATA_BYTES}")
    task_id = await manager.submit(NewTask(
        account_id=manager.account.account_id, task_type=body.task_type, data=body.data,
        selectors=body.selectors, group_name=body.delegate_group_name,
        timeout_ms=body.timeout_ms,
        capabilities=[c.dump() for c in body.capabilities] or None,
        requeue_on_loss=body.requeue_on_delegate_loss, sync=body.sync))
    return ok({"taskId": task_id}, status=200)


def task_view(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "taskId": row["task_id"], "taskType": row["task_type"], "status": row["status"],
        "delegateId": row["delegate_id"], "result": db.from_json(row["result"]),
        "errorMessage": row["error_message"], "selectors": db.from_json(row["selectors"], []),
        "delegateGroupName": row["group_name"], "timeoutMs": row["timeout_ms"],
        "createdAt": row["created_at"], "startedAt": row["acquired_at"],
        "finishedAt": row["finished_at"],
    }


async def show_task(request: web.Request) -> web.Response:
    manager = _manager(request)
    row = manager.tasks.require(request.match_info["taskId"])
    raw = request.query.get("sinceSeq")
    try:
        since = int(raw) if raw not in (None, "") else None
    except ValueError as exc:
        raise ApiError(400, "INVALID_REQUEST", "query 'sinceSeq' must be an integer") from exc
    lines = manager.tasks.logs(row["task_id"], since)
    view = task_view(row)
    view["logLines"] = lines
    view["nextSeq"] = lines[-1]["seq"] if lines else (since if since is not None else -1)
    return ok(view)


async def delete_delegate(request: web.Request) -> web.Response:
    """Delete a delegate, as in the real manager: it is told to self-destruct and never comes back
    under that identity (the container should then be stopped by its operator)."""
    manager = _manager(request, "admin")
    delegate_id = request.match_info["delegateId"]
    manager.delegates.delete(delegate_id, db.now_ms())
    manager.connections.forget(delegate_id)
    await manager.hub.send(delegate_id, SelfDestructEvent(delegate_id=delegate_id).dump())
    await manager.hub.close(delegate_id, "deleted")
    return ok({"delegateId": delegate_id, "deleted": True})


async def list_tasks(request: web.Request) -> web.Response:
    manager = _manager(request)
    status = request.query.get("status") or None
    if status is not None and status not in {s.value for s in TaskStatus}:
        raise ApiError(400, "INVALID_REQUEST",
                       f"query 'status': {status!r} is not one of {[s.value for s in TaskStatus]}")
    try:
        limit = int(request.query.get("limit", "200"))
    except ValueError:
        limit = -1
    if not 1 <= limit <= 10_000:
        raise ApiError(400, "INVALID_REQUEST", "query 'limit': expected a whole number 1..10000")
    return ok({"tasks": [task_view(r) for r in manager.tasks.list(status, limit)]})


async def abort_task(request: web.Request) -> web.Response:
    manager = _manager(request, "deployer")
    await manager.abort(request.match_info["taskId"])
    return ok({"taskId": request.match_info["taskId"], "status": TaskStatus.ABORTED.value})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/setup/delegates", list_delegates)
    app.router.add_delete("/api/setup/delegates/{delegateId}", delete_delegate)
    app.router.add_post("/api/setup/tasks", submit_task)
    app.router.add_get("/api/setup/tasks", list_tasks)
    app.router.add_get("/api/setup/tasks/{taskId}", show_task)
    app.router.add_post("/api/setup/tasks/{taskId}/abort", abort_task)
