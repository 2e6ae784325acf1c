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
import os
import signal
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil
import psycopg

from bench.common import percentile, rss_mib, table
from bench.tasks import _ws_floor
from devstack.procs import Manager, free_port
from devstack.services import HAProxy, Postgres
from devstack.swarm import Swarm, raise_fd_limit
from manager import db

#: the fleet size; lower it on a machine that others load (`BENCH_MANAGER_DELEGATES=300`): the
#: load generator shares the cores with the manager, and a starved one times out its own calls
FLEET = int(os.environ.get("BENCH_MANAGER_DELEGATES", "1000"))
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
        rate = asyncio.run(_throughput(base / "tp", pg=None, replicas=1))
        rows.append(("acquire-and-complete, 1 manager, SQLite", f"{rate:.0f} tasks/s",
                     f"{rate / sqlite_floor:.2f} x SQLite floor; {THROUGHPUT_N} tasks, "
                     f"{THROUGHPUT_DELEGATES} delegates; target >= 0.5 x"))
        with Postgres(fast=False, max_connections=100) as pg:
            for n in (1, 2):
                rate = asyncio.run(_throughput(base / f"pg{n}", pg=pg, replicas=n))
                rows.append((f"acquire-and-complete, {n} replica{'s' if n > 1 else ''}, "
                             "PostgreSQL", f"{rate:.0f} tasks/s",
                             f"{rate / pg_floor:.2f} x PostgreSQL floor; behind HAProxy; "
                             "target: 2 replicas > 1"))
            back = asyncio.run(_failover(base / "failover", pg))
        rows.append((f"failover: SIGKILL 1 of 2 replicas -> all {FLEET} delegates back",
                     f"{back:.1f} s", "through HAProxy; target < 5 s"))
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

@dataclass
class Stack:
    """One manager on SQLite, or `n` replicas on PostgreSQL behind HAProxy."""

    url: str
    env: dict[str, str]
    managers: list[Manager]
    balancer: HAProxy | None = None

    @classmethod
    async def start(cls, base: Path, *, pg: Postgres | None = None, replicas: int = 1,
                    args: tuple[str, ...] = ()) -> Stack:
        common = ("--log-level", "WARNING", "--rebroadcast-s", "1", *args)
        if pg is None:
            m = await asyncio.to_thread(lambda: Manager(base / "manager", *common).start())
            return cls(m.url, m.env, [m])
        name = "bench_" + uuid.uuid4().hex[:12]
        async with await psycopg.AsyncConnection.connect(pg.url, autocommit=True) as admin:
            await admin.execute(f"CREATE DATABASE {name}")
        url = pg.url.rsplit("/", 1)[0] + "/" + name
        ports = [free_port() for _ in range(replicas)]
        balancer = HAProxy(ports)
        managers = []
        for i, port in enumerate(ports):
            m = Manager(base / f"replica{i}", "--database-url", url, "--public-url",
                        balancer.url, "--key-file", str(base / "manager.key"), *common)
            m.port = port
            await asyncio.to_thread(m.start)
            managers.append(m)
        await asyncio.to_thread(balancer.start)
        return cls(balancer.url, managers[0].env, managers, balancer)

    async def stop(self) -> None:
        for m in self.managers:
            await asyncio.to_thread(m.stop)
        if self.balancer is not None:
            await asyncio.to_thread(self.balancer.close)

    def swarm(self, n: int, work: Path) -> Swarm:
        work.mkdir(parents=True, exist_ok=True)
        return Swarm(self.url, self.env["ACCOUNT_ID"], self.env["DELEGATE_TOKEN"], n, work,
                     heartbeat_s=HEARTBEAT_S)

    async def submit(self, session: aiohttp.ClientSession) -> str:
        headers = {"Authorization": f"Bearer {self.env['DEVSTACK_API_KEY']}"}
        body = {"taskType": "NOOP", "data": {}, "timeoutMs": 300_000}
        async with session.post(f"{self.url}/api/setup/tasks", json=body,
                                headers=headers) as resp:
            answer = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"submit: {resp.status} {answer}")
            return str(answer["resource"]["taskId"])


async def _fleet(base: Path) -> dict[str, float]:
    stack = await Stack.start(base)
    swarm = stack.swarm(FLEET, base / "work")
    try:
        t0 = time.monotonic()
        await swarm.start()
        await swarm.wait_connected(within_s=300)
        connect_s = time.monotonic() - t0
        waits: list[float] = []
        async with aiohttp.ClientSession() as session:
            for _ in range(PICKUPS):
                started = time.perf_counter()
                task_id = await stack.submit(session)
                await swarm.wait_done([task_id], 30)
                waits.append((swarm.acquired_at[task_id] - started) * 1000)
                await asyncio.sleep(0.02)
        proc = psutil.Process(stack.managers[0].process.pid if stack.managers[0].process else 0)
        cpu0, w0 = sum(proc.cpu_times()[:2]), time.monotonic()
        await asyncio.sleep(IDLE_WINDOW_S)
        cpu = (sum(proc.cpu_times()[:2]) - cpu0) / (time.monotonic() - w0) * 100
        return {"connect_s": connect_s, "p50": percentile(waits, 50),
                "p99": percentile(waits, 99), "rss": rss_mib(proc.pid), "cpu": cpu}
    finally:
        await swarm.close()
        await stack.stop()


async def _throughput(base: Path, *, pg: Postgres | None, replicas: int) -> float:
    stack = await Stack.start(base, pg=pg, replicas=replicas)
    swarm = stack.swarm(THROUGHPUT_DELEGATES, base / "work")
    try:
        await swarm.start()
        await swarm.wait_connected(within_s=120)
        ids: list[str] = []
        t0 = time.perf_counter()
        async with aiohttp.ClientSession() as session:
            async def submitter(count: int) -> None:
                for _ in range(count):
                    ids.append(await stack.submit(session))
            await asyncio.gather(*(submitter(THROUGHPUT_N // 16) for _ in range(16)))
        await swarm.wait_done(ids, 300)
        elapsed = time.perf_counter() - t0
        twice = [t for t in ids if swarm.done[t] != 1 or len(set(swarm.acquired_by[t])) != 1]
        if twice:
            raise RuntimeError(f"{len(twice)} tasks acquired or completed more than once")
        return len(ids) / elapsed
    finally:
        await swarm.close()
        await stack.stop()


async def _failover(base: Path, pg: Postgres) -> float:
    """Seconds from a replica's SIGKILL until every delegate has a heartbeat acknowledged again."""
    stack = await Stack.start(base, pg=pg, replicas=2)
    swarm = stack.swarm(FLEET, base / "work")
    try:
        await swarm.start()
        await swarm.wait_connected(within_s=300)
        victim = stack.managers[0].process
        assert victim is not None
        t0 = time.monotonic()
        victim.send(signal.SIGKILL)
        for _ in range(2000):  # until the loss is seen (at most 10 s)
            if swarm.connected() < len(swarm.delegates):
                break
            await asyncio.sleep(0.005)
        await swarm.wait_connected(within_s=300)
        return time.monotonic() - t0
    finally:
        await swarm.close()
        await stack.stop()
