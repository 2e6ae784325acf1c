"""Issue 13: the manager under many delegates, each figure beside a floor measured in the same run.

1. 1,000 streaming delegates (the delegate's own client and connection code, `devstack.swarm`, in
   this process) on one manager: how long until all are connected, task pickup (submitted ->
   acquired) p50/p99, the manager's RSS and CPU while they heartbeat. Floor: a bare aiohttp
   websocket round trip.
2. Acquire-and-complete throughput (submit, broadcast, acquire, result) on SQLite, as tasks/s and
   as a ratio to the floor: the bare database's own rate for the acquire statement (the manager's
   conditional UPDATE on the manager's schema, nothing else). The same for PostgreSQL (floor:
   the statement through psycopg from 8 connections); the manager rows on PostgreSQL (one and two
   replicas behind HAProxy) and failover need the PostgreSQL store.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import psutil
import psycopg

from bench.common import percentile, rss_mib, table
from bench.tasks import _ws_floor
from devstack.procs import Manager
from devstack.services import Postgres
from devstack.swarm import Swarm, raise_fd_limit
from manager import db

FLEET = 1000
PICKUPS = 200
THROUGHPUT_N = 2000
THROUGHPUT_DELEGATES = 50
FLOOR_N = 5000
HEARTBEAT_S = 10.0
IDLE_WINDOW_S = 20.0

ACQUIRE_SQL = ("UPDATE tasks SET status='STARTED', delegate_id=?, instance_id=?, acquired_at=?,"
               " last_seen_at=?, expires_at=?+timeout_ms+60000 WHERE task_id=? AND status='QUEUED'")


def run() -> str:
    limit = raise_fd_limit()
    rows: list[tuple[str, str, str]] = []
    ws50, ws99 = asyncio.run(_ws_floor())
    rows.append(("floor: bare websocket round trip p50 / p99", f"{ws50:.2f} / {ws99:.2f} ms",
                 "aiohttp echo, same machine, same run"))
    sqlite_floor = _sqlite_floor()
    rows.append(("floor: SQLite acquire statement", f"{sqlite_floor:.0f} /s",
                 f"{FLOOR_N} conditional UPDATEs, WAL, one connection"))
    pg_floor = asyncio.run(_pg_floor())
    rows.append(("floor: PostgreSQL acquire statement", f"{pg_floor:.0f} /s",
                 f"{FLOOR_N} conditional UPDATEs, psycopg async, 8 connections, fsync on"))
    with tempfile.TemporaryDirectory(prefix="bench-manager-") as tmp:
        base = Path(tmp)
        fleet = asyncio.run(_fleet(base / "fleet"))
        rows.append((f"{FLEET} streaming delegates: all connected after",
                     f"{fleet['connect_s']:.1f} s", f"started 500/s; RLIMIT_NOFILE {limit}"))
        rows.append((f"pickup with {FLEET} delegates p50 / p99",
                     f"{fleet['p50']:.1f} / {fleet['p99']:.1f} ms",
                     f"{PICKUPS} tasks one at a time; target p99 < 50 ms; "
                     f"floor p99 {ws99:.2f} ms"))
        rows.append((f"manager RSS with {FLEET} delegates", f"{fleet['rss']:.0f} MiB",
                     f"after {PICKUPS} tasks"))
        rows.append((f"manager CPU with {FLEET} delegates idle",
                     f"{fleet['cpu']:.0f} % of a core",
                     f"heartbeat every {HEARTBEAT_S:g} s each, {IDLE_WINDOW_S:g} s window"))
        rate = asyncio.run(_throughput(base / "tp"))
        rows.append(("acquire-and-complete, 1 manager, SQLite", f"{rate:.0f} tasks/s",
                     f"{rate / sqlite_floor:.2f} x SQLite floor; {THROUGHPUT_N} tasks, "
                     f"{THROUGHPUT_DELEGATES} delegates; target >= 0.5 x"))
    for what in ("acquire-and-complete, 1 replica, PostgreSQL",
                 "acquire-and-complete, 2 replicas, PostgreSQL",
                 "failover: SIGKILL a replica -> all delegates back"):
        rows.append((what, "not built", "needs the PostgreSQL store and replicas (issue 13)"))
    return table("Manager at scale", rows)


# --- floors --------------------------------------------------------------------------------------

def _sqlite_floor() -> float:
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as tmp:
        conn = db.connect(Path(tmp) / "floor.sqlite3")
        ids = _seed(lambda sql, rows: conn.executemany(sql.replace("$", "?"), rows))
        now = db.now_ms()
        t0 = time.perf_counter()
        for task_id in ids:
            conn.execute(ACQUIRE_SQL, ("d", "i", now, now, now, task_id))
        elapsed = time.perf_counter() - t0
        conn.close()
    return len(ids) / elapsed


def _seed(executemany: object) -> list[str]:
    assert callable(executemany)
    now = db.now_ms()
    ids = [uuid.uuid4().hex for _ in range(FLOOR_N)]
    executemany(
        "INSERT INTO tasks (task_id, account_id, task_type, data, timeout_ms, status, created_at,"
        " expires_at) VALUES ($,$,$,$,$,$,$,$)",
        [(t, "acct", "NOOP", "{}", 60_000, "QUEUED", now, now + 60_000) for t in ids])
    return ids


_PG_TABLE = """CREATE TABLE tasks (
    task_id TEXT PRIMARY KEY, account_id TEXT NOT NULL, task_type TEXT NOT NULL,
    data TEXT NOT NULL, timeout_ms BIGINT NOT NULL, status TEXT NOT NULL, delegate_id TEXT,
    instance_id TEXT, created_at BIGINT NOT NULL, acquired_at BIGINT, last_seen_at BIGINT,
    expires_at BIGINT NOT NULL)"""


async def _pg_floor() -> float:
    pg = await asyncio.to_thread(lambda: Postgres(fast=False).start())
    try:
        ids = [uuid.uuid4().hex for _ in range(FLOOR_N)]
        now = db.now_ms()
        async with await psycopg.AsyncConnection.connect(pg.url, autocommit=True) as conn:
            await conn.execute(_PG_TABLE)
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO tasks (task_id, account_id, task_type, data, timeout_ms, status,"
                    " created_at, expires_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
                    [(t, "acct", "NOOP", "{}", 60_000, "QUEUED", now, now + 60_000) for t in ids])
        sql = ACQUIRE_SQL.replace("?", "%s")
        queue = list(reversed(ids))

        async def worker() -> None:
            async with await psycopg.AsyncConnection.connect(pg.url, autocommit=True) as conn:
                while queue:
                    await conn.execute(sql, ("d", "i", now, now, now, queue.pop()),
                                       prepare=True)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(8)))
        return len(ids) / (time.perf_counter() - t0)
    finally:
        await asyncio.to_thread(pg.close)


# --- the manager ---------------------------------------------------------------------------------

async def _submit(session: aiohttp.ClientSession, manager: Manager) -> str:
    headers = {"Authorization": f"Bearer {manager.env['DEVSTACK_API_KEY']}"}
    body = {"accountId": manager.account_id, "taskType": "NOOP", "data": {},
            "timeoutMs": 300_000}
    async with session.post(f"{manager.url}/api/setup/tasks", json=body,
                            headers=headers) as resp:
        answer = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"submit: {resp.status} {answer}")
        return str(answer["resource"]["taskId"])


def _swarm(manager: Manager, n: int, work: Path) -> Swarm:
    work.mkdir(parents=True, exist_ok=True)
    return Swarm(manager.url, manager.account_id, manager.env["DELEGATE_TOKEN"], n, work,
                 heartbeat_s=HEARTBEAT_S)


async def _fleet(base: Path) -> dict[str, float]:
    manager = await asyncio.to_thread(
        lambda: Manager(base / "manager", "--log-level", "WARNING").start())
    swarm = _swarm(manager, FLEET, base / "work")
    try:
        t0 = time.monotonic()
        await swarm.start()
        await swarm.wait_connected(within_s=300)
        connect_s = time.monotonic() - t0
        waits: list[float] = []
        async with aiohttp.ClientSession() as session:
            for _ in range(PICKUPS):
                started = time.perf_counter()
                task_id = await _submit(session, manager)
                await swarm.wait_done([task_id], 30)
                waits.append((swarm.acquired_at[task_id] - started) * 1000)
                await asyncio.sleep(0.02)
        proc = psutil.Process(manager.process.pid if manager.process else 0)
        cpu0, w0 = sum(proc.cpu_times()[:2]), time.monotonic()
        await asyncio.sleep(IDLE_WINDOW_S)
        cpu = (sum(proc.cpu_times()[:2]) - cpu0) / (time.monotonic() - w0) * 100
        return {"connect_s": connect_s, "p50": percentile(waits, 50),
                "p99": percentile(waits, 99), "rss": rss_mib(proc.pid), "cpu": cpu}
    finally:
        await swarm.close()
        await asyncio.to_thread(manager.stop)


async def _throughput(base: Path) -> float:
    manager = await asyncio.to_thread(
        lambda: Manager(base / "manager", "--log-level", "WARNING", "--rebroadcast-s", "1")
        .start())
    swarm = _swarm(manager, THROUGHPUT_DELEGATES, base / "work")
    try:
        await swarm.start()
        await swarm.wait_connected(within_s=120)
        ids: list[str] = []
        t0 = time.perf_counter()
        async with aiohttp.ClientSession() as session:
            async def submitter(count: int) -> None:
                for _ in range(count):
                    ids.append(await _submit(session, manager))
            await asyncio.gather(*(submitter(THROUGHPUT_N // 16) for _ in range(16)))
        await swarm.wait_done(ids, 300)
        elapsed = time.perf_counter() - t0
        twice = [t for t in ids if swarm.done[t] != 1 or len(swarm.acquired_by[t]) != 1]
        if twice:
            raise RuntimeError(f"{len(twice)} tasks acquired or completed more than once")
        return len(ids) / elapsed
    finally:
        await swarm.close()
        await asyncio.to_thread(manager.stop)
