"""SQLite storage: schema, connection set-up, and the account record.

One connection, used from the event loop only. Every statement is small and indexed, so calling
sqlite3 synchronously costs tens of microseconds and keeps each state change atomic for free (no
other coroutine can run between two statements without an `await`). WAL + synchronous=NORMAL:
durable across process crashes, fast commits. Domain queries live beside their rules in
`delegates.py`, `tasks.py` and `profiles.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS account (
    account_id TEXT PRIMARY KEY,
    delegate_token TEXT NOT NULL,
    api_key TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deleted_delegates (
    delegate_id TEXT PRIMARY KEY,
    random_token TEXT,
    deleted_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deleted_delegates_token ON deleted_delegates(random_token);
CREATE TABLE IF NOT EXISTS delegates (
    delegate_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    host_name TEXT NOT NULL,          -- as shown: '<base>_<seq>' for ECS
    host_base TEXT NOT NULL,          -- as sent by the delegate
    seq INTEGER,                      -- ECS sequence number, else NULL
    random_token TEXT,                -- ECS slot token
    delegate_type TEXT NOT NULL,
    delegate_name TEXT,
    group_name TEXT,
    group_id TEXT,
    profile_id TEXT,                  -- the profile it registered with
    assigned_profile_id TEXT,         -- assigned through the setup API
    description TEXT,
    version TEXT NOT NULL,
    ip TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '[]',
    supported_task_types TEXT NOT NULL DEFAULT '[]',
    polling INTEGER NOT NULL DEFAULT 0,
    instance_id TEXT,
    connected INTEGER NOT NULL DEFAULT 1,
    unregistered INTEGER NOT NULL DEFAULT 0,
    last_heartbeat INTEGER NOT NULL,  -- manager clock, epoch ms
    registered_at INTEGER NOT NULL,
    profile_result TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS delegates_ecs_slot
    ON delegates(account_id, host_base, seq) WHERE seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS delegates_host ON delegates(account_id, host_name);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    task_type TEXT NOT NULL,
    data TEXT NOT NULL,
    sync INTEGER NOT NULL DEFAULT 0,
    selectors TEXT NOT NULL DEFAULT '[]',
    group_name TEXT,
    timeout_ms INTEGER NOT NULL,
    capabilities TEXT,                -- JSON list, NULL when none
    requeue_on_loss INTEGER NOT NULL DEFAULT 1,
    status TEXT NOT NULL,
    delegate_id TEXT,                 -- current (or last) assignee
    instance_id TEXT,
    created_at INTEGER NOT NULL,
    acquired_at INTEGER,
    finished_at INTEGER,
    expires_at INTEGER NOT NULL,
    last_seen_at INTEGER,             -- last heartbeat that listed it
    next_broadcast_at INTEGER NOT NULL DEFAULT 0,
    broadcast_round INTEGER NOT NULL DEFAULT 0,
    validating_since INTEGER,
    excluded TEXT NOT NULL DEFAULT '[]',        -- delegates that must not take it again
    capability_failures TEXT NOT NULL DEFAULT '[]',
    result TEXT,
    error_message TEXT,
    aborted_at INTEGER
);
CREATE INDEX IF NOT EXISTS tasks_status_created ON tasks(status, created_at);
CREATE INDEX IF NOT EXISTS tasks_status_expires ON tasks(status, expires_at);
CREATE INDEX IF NOT EXISTS tasks_status_broadcast ON tasks(status, next_broadcast_at);
CREATE INDEX IF NOT EXISTS tasks_delegate_status ON tasks(delegate_id, status);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks(created_at);
CREATE TABLE IF NOT EXISTS task_logs (
    task_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS delegate_connections (
    connection_hash TEXT PRIMARY KEY, -- SHA-256 of the delegateConnectionId handed out
    delegate_id TEXT NOT NULL,
    token_name TEXT,
    instance_id TEXT,
    created_at INTEGER NOT NULL,
    superseded_at INTEGER
);
CREATE INDEX IF NOT EXISTS delegate_connections_delegate ON delegate_connections(delegate_id);
CREATE TABLE IF NOT EXISTS delegate_tokens (
    name TEXT PRIMARY KEY,
    secret_enc TEXT NOT NULL,         -- base64 AES-256-GCM under the manager key (manager/tokens.py)
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    expires_at INTEGER,
    previous_enc TEXT,                -- the secret before the last rotation, during its grace
    previous_until INTEGER
);
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,               -- viewer, deployer, admin
    key_hash TEXT NOT NULL UNIQUE,    -- SHA-256 of the key; the key itself is never stored
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS sessions (
    session_hash TEXT PRIMARY KEY,    -- SHA-256 of the session cookie
    key_name TEXT NOT NULL,
    role TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS profiles (
    profile_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    script TEXT NOT NULL,
    last_updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS group_profiles (
    account_id TEXT NOT NULL,
    group_name TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    PRIMARY KEY (account_id, group_name)
);
"""


def now_ms() -> int:
    return int(time.time() * 1000)


def to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def from_json(value: str | None, default: Any = None) -> Any:
    return default if value is None else json.loads(value)


@dataclass(frozen=True)
class Account:
    """The one account of the local manager. `__repr__` never shows the secrets."""

    account_id: str
    delegate_token: str
    api_key: str

    def __repr__(self) -> str:
        return f"Account(account_id={self.account_id!r})"


def connect(path: Path) -> sqlite3.Connection:
    """Open (or create) the database: owner-only (0600), as it holds the account's secrets."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)  # also an older database made 0644
    for side in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{side}", 0o600)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.executescript(_SCHEMA)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return conn


def load_or_create_account(conn: sqlite3.Connection) -> Account:
    """The account made on first start; the same one on every later start with this data dir.
    Its first delegate token and API key are returned but never written here: the caller stores
    the token encrypted (`manager/tokens.py`) and the key's hash (`manager/people.py`); an older
    database's plaintext ones are moved there the same way."""
    row = conn.execute("SELECT account_id, delegate_token, api_key FROM account LIMIT 1").fetchone()
    if row is None:
        account = Account(
            account_id=uuid.uuid4().hex[:22],
            delegate_token=secrets.token_hex(16),
            api_key="dsk_" + secrets.token_urlsafe(24),
        )
        conn.execute(
            "INSERT INTO account (account_id, delegate_token, api_key, created_at)"
            " VALUES (?, ?, ?, ?)",
            (account.account_id, "", "", now_ms()),
        )
        return account
    return Account(row["account_id"], row["delegate_token"], row["api_key"])


class DatabaseUnavailable(Exception):
    """The database cannot be reached (PostgreSQL down or unreachable); the message says why.
    The API answers 503 with it; the periodic job skips a round."""


def baseline_schema() -> str:
    """The schema every start applies first (`IF NOT EXISTS`), before `manager/migrations/`."""
    return _SCHEMA
