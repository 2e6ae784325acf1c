"""People: API keys with roles (hashed at rest) and the pages' login sessions.

Roles: `admin` (everything: delegates, tokens, keys, downloads), `deployer` (submit, abort and read
tasks; read delegates), `viewer` (read). An API key is shown once when made (`hmk_...`); the
manager keeps its SHA-256. The first start makes the admin key `bootstrap` and writes its value to
`DATA_DIR/admin-api-key` (0600) for the operator (and to `delegate.env` for the local harness).

A login (the pages' form) trades a key for a session: a random id in an HttpOnly, SameSite=Strict
cookie (Secure under TLS), its SHA-256 in the store, valid 12 hours. Forms carry a CSRF token made
from the session (HMAC with a per-process secret), checked on every POST.

Storage is the small `PeopleStore` seam (SQLite here).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from dataclasses import dataclass

from aiohttp import web

from manager.envelope import ApiError

ROLES = ("viewer", "deployer", "admin")
SESSION_COOKIE = "hm_session"
SESSION_TTL_MS = 12 * 3600 * 1000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Person:
    """Who is calling: the key's name and role."""

    name: str
    role: str

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


class PeopleStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def key_by_hash(self, key_hash: str) -> sqlite3.Row | None:
        return self._conn.execute(  # type: ignore[no-any-return]
            "SELECT * FROM api_keys WHERE key_hash=? AND revoked_at IS NULL",
            (key_hash,)).fetchone()

    def list_keys(self) -> list[sqlite3.Row]:
        return self._conn.execute("SELECT name, role, created_at, revoked_at FROM api_keys"
                                  " ORDER BY name").fetchall()

    def add_key(self, name: str, role: str, key_hash: str, now: int) -> None:
        self._conn.execute("INSERT INTO api_keys (name, role, key_hash, created_at)"
                           " VALUES (?,?,?,?)", (name, role, key_hash, now))

    def revoke_key(self, name: str, now: int) -> int:
        cur = self._conn.execute("UPDATE api_keys SET revoked_at=? WHERE name=? AND"
                                 " revoked_at IS NULL", (now, name))
        self._conn.execute("DELETE FROM sessions WHERE key_name=?", (name,))
        return cur.rowcount

    def add_session(self, session_hash: str, key_name: str, role: str, expires_at: int) -> None:
        self._conn.execute("INSERT INTO sessions (session_hash, key_name, role, expires_at)"
                           " VALUES (?,?,?,?)", (session_hash, key_name, role, expires_at))

    def session(self, session_hash: str, now: int) -> sqlite3.Row | None:
        return self._conn.execute(  # type: ignore[no-any-return]
            "SELECT * FROM sessions WHERE session_hash=? AND expires_at>?",
            (session_hash, now)).fetchone()

    def end_session(self, session_hash: str) -> None:
        self._conn.execute("DELETE FROM sessions WHERE session_hash=?", (session_hash,))


class People:
    def __init__(self, store: PeopleStore) -> None:
        self.store = store
        self._csrf_key = secrets.token_bytes(32)

    def bootstrap(self, now: int) -> str | None:
        """The first admin key's value when this start made it, else None."""
        if self.store.list_keys():
            return None
        return self.create_key("bootstrap", "admin", now)

    def create_key(self, name: str, role: str, now: int) -> str:
        if not _NAME.match(name):
            raise ApiError(400, "INVALID_REQUEST", f"field 'name': {name[:70]!r} is not a key name "
                           "(letters, digits and ._-, at most 64)")
        if role not in ROLES:
            raise ApiError(400, "INVALID_REQUEST", f"field 'role': expected one of {list(ROLES)}")
        if any(r["name"] == name for r in self.store.list_keys()):
            raise ApiError(409, "CONFLICT", f"an API key named {name!r} exists")
        value = "hmk_" + secrets.token_urlsafe(32)
        self.store.add_key(name, role, digest(value), now)
        return value

    def by_key(self, value: str) -> Person | None:
        row = self.store.key_by_hash(digest(value)) if value else None
        return None if row is None else Person(row["name"], row["role"])

    def login(self, value: str, now: int) -> tuple[str, Person] | None:
        person = self.by_key(value)
        if person is None:
            return None
        session = secrets.token_urlsafe(32)
        self.store.add_session(digest(session), person.name, person.role, now + SESSION_TTL_MS)
        return session, person

    def by_session(self, session: str, now: int) -> Person | None:
        row = self.store.session(digest(session), now) if session else None
        return None if row is None else Person(row["key_name"], row["role"])

    def end_session(self, session: str) -> None:
        if session:
            self.store.end_session(digest(session))

    def csrf(self, session: str) -> str:
        return hmac.new(self._csrf_key, session.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: str, presented: str) -> bool:
        return bool(session) and hmac.compare_digest(self.csrf(session), presented)


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    return header[len("Bearer "):].strip() if header.startswith("Bearer ") else ""
