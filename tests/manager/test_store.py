"""The two stores: schema migrations on both, and a PostgreSQL outage answered with 503 and
recovered from without losing anything."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from devstack.services import Postgres
from manager import db
from manager.pgstore import PgConnection
from manager.store import migrate
from tests.manager.conftest import ServerFactory, Setup

pytestmark = pytest.mark.timeout(60)


def open_store(database_url: str | None, tmp_path: Path) -> sqlite3.Connection | PgConnection:
    return db.connect(tmp_path / "m.sqlite3") if database_url is None \
        else PgConnection(database_url)


def test_migrations_run_once_each_in_order(database_url: str | None, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_widgets.sql").write_text(
        "CREATE TABLE widgets (id TEXT PRIMARY KEY, made_at INTEGER NOT NULL);\n")
    (folder / "0002_widget_names.sql").write_text("ALTER TABLE widgets ADD COLUMN name TEXT;\n")
    conn = open_store(database_url, tmp_path)
    postgres = database_url is not None
    assert migrate(conn, postgres=postgres, directory=folder) == [1, 2]
    # epoch milliseconds fit (INTEGER is 64-bit on both stores)
    conn.execute("INSERT INTO widgets (id, made_at, name) VALUES (?, ?, ?)",
                 ("w1", db.now_ms(), "first"))
    assert migrate(conn, postgres=postgres, directory=folder) == []
    (folder / "0003_widget_colour.sql").write_text(
        "ALTER TABLE widgets ADD COLUMN colour TEXT NOT NULL DEFAULT 'grey';\n")
    assert migrate(conn, postgres=postgres, directory=folder) == [3]
    row = conn.execute("SELECT name, colour FROM widgets WHERE id=?", ("w1",)).fetchone()
    assert (row["name"], row["colour"]) == ("first", "grey")
    versions = [r["version"] for r in
                conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [1, 2, 3]
    (folder / "4_bad.sql").write_text("SELECT 1;")
    with pytest.raises(RuntimeError, match=r"4_bad\.sql"):
        migrate(conn, postgres=postgres, directory=folder)
    conn.close()


def test_a_failed_migration_leaves_no_trace(database_url: str | None, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_half.sql").write_text(
        "CREATE TABLE gadgets (id TEXT PRIMARY KEY);\nINSERT INTO no_such_table VALUES (1);\n")
    conn = open_store(database_url, tmp_path)
    with pytest.raises(Exception, match="no_such_table"):
        migrate(conn, postgres=database_url is not None, directory=folder)
    (folder / "0001_half.sql").write_text("CREATE TABLE gadgets (id TEXT PRIMARY KEY);\n")
    assert migrate(conn, postgres=database_url is not None, directory=folder) == [1]
    conn.close()


def test_an_unreachable_database_is_named_without_its_password() -> None:
    conn = PgConnection("postgresql://manager:s3cr3t-pw@127.0.0.1:1/harness")
    with pytest.raises(db.DatabaseUnavailable) as caught:
        conn.execute("SELECT 1")
    assert "PostgreSQL unreachable" in str(caught.value)
    assert "s3cr3t-pw" not in str(caught.value)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_postgres_outage_answers_503_then_recovers_by_itself(
        start_server: ServerFactory, session: aiohttp.ClientSession) -> None:
    pg = await asyncio.to_thread(lambda: Postgres().start())
    try:
        server = await start_server(database_url=pg.url)
        setup = Setup(session, server)
        task_id = await setup.submit()
        await asyncio.to_thread(pg.stop)
        async with session.get(f"{server.url}/api/setup/tasks/{task_id}",
                               headers=setup.headers) as resp:
            body = await resp.json()
        assert resp.status == 503, body
        assert body["responseMessages"][0]["code"] == "DATABASE_UNAVAILABLE"
        assert "PostgreSQL unreachable" in body["responseMessages"][0]["message"]
        await asyncio.to_thread(pg.start)
        async with asyncio.timeout(20):
            while True:
                async with session.get(f"{server.url}/api/setup/tasks/{task_id}",
                                       headers=setup.headers) as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.1)
        assert (await setup.task(task_id))["status"] == "QUEUED"  # nothing lost
        assert not server.failed.is_set()  # the periodic job lived through it
    finally:
        await asyncio.to_thread(pg.close)
