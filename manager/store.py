"""Which store: SQLite in the data dir (the default: one manager process) or PostgreSQL
(`MANAGER_DATABASE_URL=postgresql://...`: any number of manager processes on one database), and
the schema migrations that both run at start (`manager/migrations/`).

Either way the stores get an object with `sqlite3.Connection`'s calls (`pgstore.PgConnection`
offers the part they use), so there is one set of statements for both.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path
from typing import Any, cast

import structlog

from manager import db
from manager.pgstore import PgConnection, schema_for_postgres
from manager.settings import ManagerSettings

log = structlog.get_logger("manager")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
#: the advisory lock replicas take while they bring the schema up to date
_MIGRATION_LOCK = 0x6D616E61  # "mana"


def open_database(settings: ManagerSettings) -> sqlite3.Connection:
    url = settings.database_url.get_secret_value() if settings.database_url else None
    if url is None:
        conn = db.connect(settings.db_path)
        migrate(conn, postgres=False)
        return conn
    pg = PgConnection(url)
    pg.execute("SELECT pg_advisory_lock(?)", (_MIGRATION_LOCK,))
    try:
        pg.executescript(schema_for_postgres(db.baseline_schema()))
        migrate(pg, postgres=True)
    finally:
        pg.execute("SELECT pg_advisory_unlock(?)", (_MIGRATION_LOCK,))
    return cast(sqlite3.Connection, pg)


def migrate(conn: sqlite3.Connection | PgConnection, *, postgres: bool,
            directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply the migrations not applied yet, in order; returns their versions."""
    c: Any = conn
    c.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
              " name TEXT NOT NULL, applied_at BIGINT NOT NULL)")
    applied = {int(r["version"]) for r in c.execute("SELECT version FROM schema_migrations")}
    done = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise RuntimeError(f"migration file {path.name!r} is not named NNNN_what_it_does.sql")
        version = int(match.group(1))
        if version in applied:
            continue
        script = path.read_text()
        if postgres:
            script = schema_for_postgres(script)
        record = (f"INSERT INTO schema_migrations (version, name, applied_at) VALUES "
                  f"({version}, '{path.name}', {db.now_ms()});")
        try:
            c.executescript(f"BEGIN;\n{script.rstrip().rstrip(';')};\n{record}\nCOMMIT;")
        except Exception:
            with contextlib.suppress(Exception):
                c.execute("ROLLBACK")  # the failed file leaves nothing behind
            raise
        log.info("database.migrated", version=version, name=path.name)
        done.append(version)
    return done
