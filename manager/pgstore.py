"""The PostgreSQL store: the same statements the SQLite store runs, on a PostgreSQL database.

`PgConnection` offers the part of `sqlite3.Connection` that the stores call (`execute`,
`executemany`, `executescript`, `close`; rows readable by column name), so `delegates.py`,
`tasks.py` and `profiles.py` keep one set of SQL for both stores. Statements are written in the
dialect both understand; the few SQLite spellings left are translated once per statement text:
`?` placeholders become `%s`, `INSERT OR IGNORE` becomes `ON CONFLICT DO NOTHING`. Autocommit, as
on SQLite: each statement is its own transaction, and every state change is one conditional
statement (`... WHERE status = <expected>`), which is what keeps acquisition exactly once when
several manager processes share the database.

The connection is psycopg 3 in its blocking form, called from the event loop like sqlite3 is
(statements are small and indexed; on loopback each takes well under a millisecond). A lost
database raises `db.DatabaseUnavailable` (the API answers 503 with the reason); the next call after
`RETRY_CONNECT_S` connects again, so the manager recovers by itself once the database is back.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
import structlog
from psycopg.rows import dict_row

from manager.db import DatabaseUnavailable

log = structlog.get_logger("manager")

CONNECT_TIMEOUT_S = 2
RETRY_CONNECT_S = 0.5
#: a statement that takes longer than this is cancelled (an unanswered database must not hold the
#: event loop)
STATEMENT_TIMEOUT_MS = 5000

Row = dict[str, Any]


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """SQLite spelling -> PostgreSQL spelling (placeholders, INSERT OR IGNORE)."""
    out = sql.replace("%", "%%").replace("?", "%s")
    if re.match(r"\s*INSERT OR IGNORE\b", out, re.IGNORECASE):
        out = re.sub(r"INSERT OR IGNORE", "INSERT", out, count=1, flags=re.IGNORECASE)
        out = out.rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    return out


def schema_for_postgres(script: str) -> str:
    """A schema script in the common dialect -> PostgreSQL: epoch-millisecond INTEGER columns are
    64-bit (BIGINT), SQLite's WITHOUT ROWID goes, comments go."""
    script = re.sub(r"--[^\n]*", "", script)
    script = re.sub(r"\bINTEGER\b", "BIGINT", script)
    return re.sub(r"\)\s*WITHOUT ROWID", ")", script)


class PgConnection:
    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.Connection[Row] | None = None
        self._failed_at = 0.0
        self._last_error = ""
        #: counts connections made: session state (advisory locks) lives as long as one
        self.generation = 0
        self.connected_at_ms = 0

    def _connection(self) -> psycopg.Connection[Row]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if time.monotonic() - self._failed_at < RETRY_CONNECT_S:
            raise DatabaseUnavailable(self._last_error)
        try:
            self._conn = psycopg.connect(
                self._url, autocommit=True, row_factory=dict_row,
                connect_timeout=CONNECT_TIMEOUT_S,
                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}")
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from None
        self.generation += 1
        self.connected_at_ms = int(time.time() * 1000)
        if self._failed_at:
            log.info("database.reconnected")
            self._failed_at = 0.0
        return self._conn

    def _lost(self, exc: psycopg.Error) -> DatabaseUnavailable:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self._last_error = f"PostgreSQL unreachable: {_without_secrets(first)}"
        if not self._failed_at:
            log.warning("database.lost", error=self._last_error)
        self._failed_at = time.monotonic()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        return DatabaseUnavailable(self._last_error)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Row]:
        conn = self._connection()
        try:
            return conn.execute(translate(sql), tuple(params))
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if conn.closed or conn.broken:
                raise self._lost(exc) from None
            raise

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> psycopg.Cursor[Row]:
        conn = self._connection()
        cur = conn.cursor()
        try:
            cur.executemany(translate(sql), [tuple(r) for r in rows])
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if conn.closed or conn.broken:
                raise self._lost(exc) from None
            raise
        return cur

    def executescript(self, script: str) -> None:
        conn = self._connection()
        conn.execute(script.encode())  # several statements: the simple query protocol

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _without_secrets(text: str) -> str:
    """libpq messages can quote the connection string; never let a password through."""
    return re.sub(r"password=\S+", "password=***", re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@",
                                                         text))
