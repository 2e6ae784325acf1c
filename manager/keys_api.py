"""`/api/setup/api-keys`: API keys for people and scripts (`manager/people.py`), admin only.

    GET  /api/setup/api-keys                  -> {keys: [{name, role, createdAt, revokedAt}]}
    POST /api/setup/api-keys {name, role}     -> {name, role, value}  (the value, this once)
    POST /api/setup/api-keys/{name}/revoke    -> {name, revoked}  (its page sessions end too)
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from manager import db
from manager.auth import check_api_key
from manager.core import MANAGER, Manager
from manager.envelope import ApiError, ok, read_model


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    role: str


def _manager(request: web.Request) -> Manager:
    manager = request.app[MANAGER]
    check_api_key(request, manager.people, manager.account, "admin")
    return manager


async def list_keys(request: web.Request) -> web.Response:
    manager = _manager(request)
    return ok({"keys": [{"name": r["name"], "role": r["role"], "createdAt": r["created_at"],
                         "revokedAt": r["revoked_at"]} for r in manager.people.store.list_keys()]})


async def create_key(request: web.Request) -> web.Response:
    manager = _manager(request)
    body = await read_model(request, NewKey)
    value = manager.people.create_key(body.name, body.role, db.now_ms())
    return ok({"name": body.name, "role": body.role, "value": value})


async def revoke_key(request: web.Request) -> web.Response:
    manager = _manager(request)
    name = request.match_info["name"]
    if manager.people.store.revoke_key(name, db.now_ms()) != 1:
        raise ApiError(404, "NOT_FOUND", f"no live API key named {name!r}")
    return ok({"name": name, "revoked": True})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/setup/api-keys", list_keys)
    app.router.add_post("/api/setup/api-keys", create_key)
    app.router.add_post("/api/setup/api-keys/{name}/revoke", revoke_key)
