"""Delegate profiles (protocol section 6): scripts a delegate runs once per change.

The profile that applies to a delegate is the one assigned to it, else to its group, else the
`delegateProfileId` it registered with. The check answers null when the delegate already ran the
current version, `{profileId: "NONE"}` when no profile applies any more, else the profile.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from manager import db
from manager.auth import check_api_key
from manager.core import MANAGER, Manager
from manager.delegates import DelegateRecord
from manager.envelope import ApiError, ok, read_model
from protocol.wire import DelegateProfileParams, ProfileResult

_MAX_OUTPUT_CHARS = 65_536


class ProfileBody(BaseModel):
    name: str = Field(min_length=1)
    script: str


class AssignBody(BaseModel):
    profile_id: str | None = Field(default=None, alias="profileId")


def _profile(conn: sqlite3.Connection, profile_id: str | None) -> sqlite3.Row | None:
    if not profile_id:
        return None
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM profiles WHERE profile_id=?", (profile_id,)).fetchone()
    return row


def applicable(manager: Manager, rec: DelegateRecord) -> sqlite3.Row | None:
    conn = manager.conn
    if rec.assigned_profile_id:
        return _profile(conn, rec.assigned_profile_id)
    if rec.group_name:
        row = conn.execute(
            "SELECT profile_id FROM group_profiles WHERE account_id=? AND group_name=?",
            (rec.account_id, rec.group_name)).fetchone()
        if row is not None:
            return _profile(conn, row["profile_id"])
    return _profile(conn, rec.profile_id)


async def check(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    manager.auth.check_request(request)
    rec = manager.delegates.require(request.match_info["delegateId"])
    manager.connections.check(request, rec.delegate_id)
    known_id = request.query.get("profileId") or ""
    try:
        known_at = int(request.query.get("lastUpdatedAt") or 0)
    except ValueError as exc:
        raise ApiError(400, "INVALID_REQUEST",
                       "query 'lastUpdatedAt' must be epoch milliseconds") from exc
    row = applicable(manager, rec)
    if row is None:
        if known_id and known_id != "NONE":
            return ok(DelegateProfileParams(profile_id="NONE"))
        return ok(None)
    if row["profile_id"] == known_id and row["last_updated_at"] == known_at:
        return ok(None)
    return ok(DelegateProfileParams(
        profile_id=row["profile_id"], name=row["name"],
        profile_last_updated_at=row["last_updated_at"], script_content=row["script"]))


async def result(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    manager.auth.check_request(request)
    delegate_id = request.match_info["delegateId"]
    manager.delegates.require(delegate_id)
    manager.connections.check(request, delegate_id)
    body = await read_model(request, ProfileResult)
    stored: dict[str, Any] = body.dump()
    stored["output"] = body.output[-_MAX_OUTPUT_CHARS:]
    stored["receivedAt"] = db.now_ms()
    manager.delegates.save_profile_result(delegate_id, db.to_json(stored))
    return ok()


async def put_profile(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    check_api_key(request, manager.people, manager.account, "admin")
    profile_id = request.match_info["profileId"]
    body = await read_model(request, ProfileBody)
    now = db.now_ms()
    old = _profile(manager.conn, profile_id)
    if old is not None and now <= old["last_updated_at"]:
        now = old["last_updated_at"] + 1  # always a visible change
    manager.conn.execute(
        "INSERT INTO profiles (profile_id, name, script, last_updated_at) VALUES (?,?,?,?)"
        " ON CONFLICT(profile_id) DO UPDATE SET name=excluded.name, script=excluded.script,"
        " last_updated_at=excluded.last_updated_at", (profile_id, body.name, body.script, now))
    return ok({"profileId": profile_id, "name": body.name, "lastUpdatedAt": now})


async def assign_delegate(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    check_api_key(request, manager.people, manager.account, "admin")
    body = await read_model(request, AssignBody)
    _require_profile(manager, body.profile_id)
    manager.delegates.set_profile(request.match_info["delegateId"], body.profile_id)
    return ok({"profileId": body.profile_id})


async def assign_group(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    check_api_key(request, manager.people, manager.account, "admin")
    body = await read_model(request, AssignBody)
    _require_profile(manager, body.profile_id)
    group, account_id = request.match_info["groupName"], manager.account.account_id
    if body.profile_id is None:
        manager.conn.execute("DELETE FROM group_profiles WHERE account_id=? AND group_name=?",
                             (account_id, group))
    else:
        manager.conn.execute(
            "INSERT INTO group_profiles (account_id, group_name, profile_id) VALUES (?,?,?)"
            " ON CONFLICT(account_id, group_name) DO UPDATE SET profile_id=excluded.profile_id",
            (account_id, group, body.profile_id))
    return ok({"profileId": body.profile_id})


async def get_result(request: web.Request) -> web.Response:
    """What the delegate reported from its last profile run (null before the first)."""
    manager = request.app[MANAGER]
    check_api_key(request, manager.people, manager.account, "viewer")
    rec = manager.delegates.require(request.match_info["delegateId"])
    row = manager.conn.execute("SELECT profile_result FROM delegates WHERE delegate_id=?",
                               (rec.delegate_id,)).fetchone()
    return ok(db.from_json(row["profile_result"], None) if row else None)


def _require_profile(manager: Manager, profile_id: str | None) -> None:
    if profile_id is not None and _profile(manager.conn, profile_id) is None:
        raise ApiError(404, "NOT_FOUND",
                       f"profile {profile_id!r} does not exist; create it with "
                       f"PUT /api/setup/profiles/{profile_id}")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/agent/delegates/{delegateId}/profile", check)
    app.router.add_post("/api/agent/delegateFiles/{delegateId}/profile-result", result)
    app.router.add_put("/api/setup/profiles/{profileId}", put_profile)
    app.router.add_put("/api/setup/delegates/{delegateId}/profile", assign_delegate)
    app.router.add_put("/api/setup/groups/{groupName}/profile", assign_group)
    app.router.add_get("/api/setup/delegates/{delegateId}/profile-result", get_result)
