"""`/api/setup/delegate-tokens`: named delegate tokens (`manager/tokens.py`) for people and scripts.

    GET  /api/setup/delegate-tokens                     -> {tokens: [{name, status, ...}]}  (no values)
    POST /api/setup/delegate-tokens {name, validForS?}  -> {name, value}  (the value, this once)
    POST /api/setup/delegate-tokens/{name}/revoke       -> {name, status, delegatesTold}
    POST /api/setup/delegate-tokens/{name}/rotate {graceS?} -> {name, value}
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from manager import db
from manager.auth import check_api_key
from manager.core import MANAGER, Manager
from manager.envelope import ok, read_model


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class NewToken(_Body):
    name: str
    valid_for_s: int | None = Field(default=None, gt=0, le=10 * 365 * 86400)


class Rotate(_Body):
    grace_s: int = Field(default=0, ge=0, le=30 * 86400)


def _manager(request: web.Request) -> Manager:
    manager = request.app[MANAGER]
    check_api_key(request, manager.people, manager.account, "admin")
    return manager


async def list_tokens(request: web.Request) -> web.Response:
    manager = _manager(request)
    now = db.now_ms()
    views = []
    for t in sorted(manager.tokens.by_name.values(), key=lambda t: t.name):
        view = t.view(now)
        view["delegates"] = len(manager.connections.delegates_of_token(t.name))
        views.append(view)
    return ok({"tokens": views})


async def create_token(request: web.Request) -> web.Response:
    manager = _manager(request)
    body = await read_model(request, NewToken)
    t = manager.tokens.create(body.name, db.now_ms(), body.valid_for_s)
    return ok({"name": t.name, "value": t.secret})


async def revoke_token(request: web.Request) -> web.Response:
    manager = _manager(request)
    name = request.match_info["name"]
    told = await manager.revoke_token(name)
    return ok({"name": name, "status": "REVOKED", "delegatesTold": told})


async def rotate_token(request: web.Request) -> web.Response:
    manager = _manager(request)
    body = await read_model(request, Rotate) if request.can_read_body else Rotate()
    name = request.match_info["name"]
    return ok({"name": name, "value": manager.rotate_token(name, body.grace_s)})


def add_routes(app: web.Application) -> None:
    base = "/api/setup/delegate-tokens"
    app.router.add_get(base, list_tokens)
    app.router.add_post(base, create_token)
    app.router.add_post(f"{base}/{{name}}/revoke", revoke_token)
    app.router.add_post(f"{base}/{{name}}/rotate", rotate_token)
