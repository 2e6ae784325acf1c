"""One identity per delegate: the connection credential (`delegateConnectionId`).

Registration issues a random credential bound to the delegate id (and to the token name the
registration came with); the manager keeps only its SHA-256. Every later call for delegate X
(heartbeat, stream, task events, acquire, capability report, logs, result, profile, unregister)
must carry X's credential in the `delegateConnectionId` header, so the account's token alone no
longer acts as any delegate.

A register for X that presents X's current credential keeps it (ECS keep-alive, a re-register
after a manager restart). One that does not (another process claiming X) gets a new credential and
the older connections are *superseded*: they may still heartbeat and report what they already
acquired, but acquire nothing more, and their streams are told to stop
(`DelegateConnectionSuperseded`). A watcher upgrade, where the new process registers while the old
one drains, is the same path: the old one finishes its tasks and exits.

Storage is the small `ConnectionStore` seam (SQLite here; another store implements the same five
methods; each replica keeps a cache and asks the store on a miss).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass

import structlog
from aiohttp import web

from manager.envelope import ApiError
from protocol.wire import CONNECTION_HEADER

log = structlog.get_logger("manager")

_MISSING = (f"send the '{CONNECTION_HEADER}' header that registration returned for this delegate; "
            "register again if it was lost")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class DelegateConnection:
    connection_hash: str
    delegate_id: str
    token_name: str | None
    instance_id: str | None
    created_at: int
    superseded_at: int | None = None

    @property
    def superseded(self) -> bool:
        return self.superseded_at is not None


def _row(r: sqlite3.Row) -> DelegateConnection:
    return DelegateConnection(r["connection_hash"], r["delegate_id"], r["token_name"],
                              r["instance_id"], r["created_at"], r["superseded_at"])


class ConnectionStore:
    """Where connection records live (SQLite)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def load_all(self) -> list[DelegateConnection]:
        return [_row(r) for r in self._conn.execute("SELECT * FROM delegate_connections")]

    def get(self, connection_hash: str) -> DelegateConnection | None:
        row = self._conn.execute("SELECT * FROM delegate_connections WHERE connection_hash=?",
                                 (connection_hash,)).fetchone()
        return None if row is None else _row(row)

    def load_for(self, delegate_id: str) -> list[DelegateConnection]:
        return [_row(r) for r in self._conn.execute(
            "SELECT * FROM delegate_connections WHERE delegate_id=?", (delegate_id,))]

    def insert(self, c: DelegateConnection) -> None:
        self._conn.execute(
            "INSERT INTO delegate_connections (connection_hash, delegate_id, token_name,"
            " instance_id, created_at, superseded_at) VALUES (?,?,?,?,?,?)",
            (c.connection_hash, c.delegate_id, c.token_name, c.instance_id, c.created_at,
             c.superseded_at))

    def supersede(self, hashes: list[str], now: int) -> None:
        self._conn.executemany(
            "UPDATE delegate_connections SET superseded_at=? WHERE connection_hash=?",
            [(now, h) for h in hashes])

    def delete_hashes(self, hashes: list[str]) -> None:
        self._conn.executemany("DELETE FROM delegate_connections WHERE connection_hash=?",
                               [(h,) for h in hashes])

    def delete_for(self, delegate_id: str) -> None:
        self._conn.execute("DELETE FROM delegate_connections WHERE delegate_id=?", (delegate_id,))


class Connections:
    """Connection credentials, in memory and in the store."""

    #: superseded connections kept per delegate (an upgrade's old process drains through one)
    KEEP_SUPERSEDED = 4

    def __init__(self, store: ConnectionStore, *, shared: bool = False) -> None:
        self._store = store
        #: other manager processes (replicas) issue and supersede credentials too: read a
        #: delegate's records again before every decision about it
        self._shared = shared
        self._by_hash = {c.connection_hash: c for c in store.load_all()}

    def _refresh(self, delegate_id: str) -> None:
        if not self._shared:
            return
        for h in [h for h, c in self._by_hash.items() if c.delegate_id == delegate_id]:
            del self._by_hash[h]
        self._by_hash.update((c.connection_hash, c) for c in self._store.load_for(delegate_id))

    def presented(self, request: web.Request) -> str:
        return request.headers.get(CONNECTION_HEADER, "").strip()

    def find(self, delegate_id: str, secret: str) -> DelegateConnection | None:
        if not secret:
            return None
        self._refresh(delegate_id)  # replicas: what the database says now
        key = digest(secret)
        found = self._by_hash.get(key)
        if found is None:  # issued by another replica on the same database
            found = self._store.get(key)
            if found is not None:
                self._by_hash[key] = found
        if found is None or not hmac.compare_digest(found.delegate_id, delegate_id):
            return None
        return found

    def check(self, request: web.Request, delegate_id: str) -> DelegateConnection:
        """The caller's connection for `delegate_id`, or 403 DELEGATE_CONNECTION_INVALID."""
        found = self.find(delegate_id, self.presented(request))
        if found is None:
            raise ApiError(403, "DELEGATE_CONNECTION_INVALID",
                           f"not a connection of delegate {delegate_id}: {_MISSING}")
        return found

    def check_current(self, request: web.Request, delegate_id: str) -> DelegateConnection:
        """As `check`, and not superseded (409 DELEGATE_SUPERSEDED): for taking new work."""
        found = self.check(request, delegate_id)
        if found.superseded:
            raise ApiError(409, "DELEGATE_SUPERSEDED",
                           f"another process registered as delegate {delegate_id}; this one may "
                           "finish what it runs but takes no new tasks")
        return found

    def register(self, delegate_id: str, presented: str, *, token_name: str | None,
                 instance_id: str | None, now: int) -> tuple[str, list[DelegateConnection]]:
        """The credential to hand back, and the connections this registration superseded."""
        self._refresh(delegate_id)
        found = self.find(delegate_id, presented)
        if found is not None and not found.superseded:
            return presented, []
        secret = "dc_" + secrets.token_urlsafe(24)
        new = DelegateConnection(digest(secret), delegate_id, token_name, instance_id, now)
        older = [c for c in self._by_hash.values()
                 if c.delegate_id == delegate_id and not c.superseded]
        for c in older:
            c.superseded_at = now
        self._store.supersede([c.connection_hash for c in older], now)
        self._store.insert(new)
        self._by_hash[new.connection_hash] = new
        self._prune(delegate_id)
        if older:
            log.warning("delegate.connection_superseded", delegate_id=delegate_id,
                        superseded=len(older), instance_id=instance_id)
        return secret, older

    def _prune(self, delegate_id: str) -> None:
        old = sorted((c for c in self._by_hash.values()
                      if c.delegate_id == delegate_id and c.superseded),
                     key=lambda c: c.superseded_at or 0)
        drop = [c.connection_hash for c in old[:-self.KEEP_SUPERSEDED]]
        for h in drop:
            del self._by_hash[h]
        self._store.delete_hashes(drop)

    def forget(self, delegate_id: str) -> None:
        """A deleted delegate: none of its credentials works any more."""
        for h in [h for h, c in self._by_hash.items() if c.delegate_id == delegate_id]:
            del self._by_hash[h]
        self._store.delete_for(delegate_id)

    def delegates_of_token(self, token_name: str) -> set[str]:
        return {c.delegate_id for c in self._by_hash.values() if c.token_name == token_name}

    def token_name_of(self, delegate_id: str) -> str | None:
        self._refresh(delegate_id)
        current = [c for c in self._by_hash.values()
                   if c.delegate_id == delegate_id and not c.superseded]
        return current[-1].token_name if current else None
