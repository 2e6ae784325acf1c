"""Issue 3: task pickup latency (streaming, polling), no-op throughput (1 and 3 delegates), and the
floor: a bare aiohttp websocket round trip on the same machine, in the same run."""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import percentile, table
from devstack.procs import FINAL_STATES, REPO, Manager, Process, delegate_env, wait_until

PICKUP_STREAM_N = 200
PICKUP_POLL_N = 25
THROUGHPUT_N = 3000


def run() -> str:
    rows: list[tuple[str, str, str]] = []
    floor = asyncio.run(_ws_floor())
    rows.append(("floor: bare aiohttp websocket round trip p50 / p99",
                 f"{floor[0]:.2f} / {floor[1]:.2f} ms", "same machine, same run"))
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tmp:
        base = Path(tmp)
        for mode, polling in (("streaming", False), ("polling", True)):
            p50, p99, interval = _pickup(base / mode, polling)
            target = "target p99 < 25 ms" if not polling else \
                f"target <= interval {interval * 1000:.0f} ms + 50 ms (Harness polls every 3 s)"
            rows.append((f"pickup (submitted -> acquired) {mode} p50 / p99",
                         f"{p50:.1f} / {p99:.1f} ms", target))
        for n in (1, 3):
            rate, wall = _throughput(base / f"tp{n}", n)
            rows.append((f"no-op throughput, {n} delegate{'s' if n > 1 else ''}",
                         f"{rate:.0f} tasks/s", f"{THROUGHPUT_N} tasks in {wall:.1f} s; "
                         + ("target >= 500/s" if n == 1 else "same manager")))
    return table("Task path", rows)


# --- the floor -----------------------------------------------------------------------------------

async def _ws_floor(n: int = 2000) -> tuple[float, float]:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/ws", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    times: list[float] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(
            f"http://127.0.0.1:{port}/ws") as ws:
        for _ in range(n):
            t0 = time.perf_counter()
            await ws.send_str('{"eventType":"DelegateTaskEvent","delegateTaskId":"x"}')
            await ws.receive()
            times.append((time.perf_counter() - t0) * 1000)
    await runner.cleanup()
    return percentile(times, 50), percentile(times, 99)


# --- helpers -------------------------------------------------------------------------------------

def _stack(base: Path, n: int, **env: str) -> tuple[Manager, list[Process]]:
    manager = Manager(base / "manager", "--rebroadcast-s", "1").start()
    procs = []
    for i in range(n):
        work = base / f"d{i}"
        work.mkdir()
        e = delegate_env(manager, work, DELEGATE_HOSTNAME=f"bench-{i}", DELEGATE_TYPE="SHELL_SCRIPT",
                         LOG_LEVEL="WARNING", DELEGATE_HEARTBEAT_INTERVAL_S="10", **env)
        procs.append(Process([sys.executable, "-m", "delegate"], e, REPO).start())
    wait_until(lambda: len([d for d in manager.delegates() if d["status"] == "CONNECTED"]) >= n,
               20, f"{n} delegates CONNECTED")
    time.sleep(0.5)
    return manager, procs


def _stop(manager: Manager, procs: list[Process]) -> None:
    for p in procs:
        p.stop()
    manager.stop()


def _wait_final(manager: Manager, task_ids: list[str], timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    wanted = set(task_ids)
    while True:
        rows = manager.api("GET", "/api/setup/tasks?limit=10000")["tasks"]
        done = [r for r in rows if r["taskId"] in wanted and r["status"] in FINAL_STATES]
        if len(done) == len(wanted):
            return done
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(wanted) - len(done)} tasks unfinished")
        time.sleep(0.2)


# --- pickup --------------------------------------------------------------------------------------

def _pickup(base: Path, polling: bool) -> tuple[float, float, float]:
    interval = 2.0
    manager, procs = _stack(base, 1, POLL_FOR_TASKS=str(polling).lower(),
                            DELEGATE_POLL_INTERVAL_S=str(interval))
    try:
        ids = []
        for _ in range(PICKUP_POLL_N if polling else PICKUP_STREAM_N):
            ids.append(manager.submit("NOOP", {}, timeoutMs=60_000))
            time.sleep(random.uniform(0.0, 0.4) if polling else 0.01)
        rows = _wait_final(manager, ids, 120)
        waits = [r["startedAt"] - r["createdAt"] for r in rows if r["startedAt"]]
        return percentile(waits, 50), percentile(waits, 99), interval
    finally:
        _stop(manager, procs)


# --- throughput ----------------------------------------------------------------------------------

def _throughput(base: Path, n: int) -> tuple[float, float]:
    manager, procs = _stack(base, n)
    try:
        ids = asyncio.run(_submit_many(manager, THROUGHPUT_N))
        rows = _wait_final(manager, ids, 300)
        start = min(r["createdAt"] for r in rows)
        end = max(r["finishedAt"] for r in rows)
        ok = sum(1 for r in rows if r["status"] == "SUCCEEDED")
        if ok != len(rows):
            raise RuntimeError(f"only {ok}/{len(rows)} no-op tasks succeeded")
        wall = (end - start) / 1000
        return len(rows) / wall, wall
    finally:
        _stop(manager, procs)


async def _submit_many(manager: Manager, count: int, parallel: int = 16) -> list[str]:
    headers = {"Authorization": f"Bearer {manager.env['DEVSTACK_API_KEY']}"}
    body = {"accountId": manager.account_id, "taskType": "NOOP", "data": {}, "timeoutMs": 300_000}
    ids: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            queue.get_nowait()
            async with session.post(f"{manager.url}/api/setup/tasks", json=body,
                                    headers=headers) as resp:
                ids.append((await resp.json())["resource"]["taskId"])

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(parallel)))
    return ids
