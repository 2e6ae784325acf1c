"""Two manager replicas on one PostgreSQL behind HAProxy, delegates streaming through the balancer
(the delegate's own connection code, many per process: `devstack.swarm`). Faults: a replica is
SIGKILLed mid-run; PostgreSQL is stopped for 20 s. Every task ends exactly once, with its log."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from devstack.procs import Manager, free_port
from devstack.services import HAProxy, Postgres
from devstack.swarm import Swarm, raise_fd_limit

pytestmark = pytest.mark.timeout(240)

DELEGATES = 20
LOG_LINES = 3


@dataclass
class Cluster:
    pg: Postgres
    replicas: list[Manager]
    balancer: HAProxy
    swarm: Swarm
    session: aiohttp.ClientSession
    ports: list[int]

    @property
    def env(self) -> dict[str, str]:
        return self.replicas[0].env

    async def call(self, method: str, path: str, body: Any = None,
                   base: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.env['DEVSTACK_API_KEY']}"}
        async with self.session.request(method, (base or self.balancer.url) + path, json=body,
                                        headers=headers) as resp:
            return resp.status, await resp.json()

    async def submit(self) -> str:
        """Submit through the balancer, again while a replica is being replaced (a 502/503 or a
        reset connection made no task: the balancer answers those before any replica took it)."""
        body = {"taskType": "NOOP", "data": {}, "timeoutMs": 120_000}
        for _ in range(100):
            try:
                status, answer = await self.call("POST", "/api/setup/tasks", body)
            except aiohttp.ClientError:
                status, answer = 0, None
            if status == 200:
                return str(answer["resource"]["taskId"])
            await asyncio.sleep(0.1)
        raise AssertionError(f"could not submit: {status} {answer}")

    async def task(self, task_id: str) -> dict[str, Any]:
        status, answer = await self.call("GET", f"/api/setup/tasks/{task_id}")
        assert status == 200, answer
        return answer["resource"]  # type: ignore[no-any-return]

    async def check_every_task_ended_once(self, ids: list[str]) -> None:
        for task_id in ids:
            task = await self.task(task_id)
            assert task["status"] == "SUCCEEDED", task
            assert [ln["message"] for ln in task["logLines"]] == \
                [f"line {i}" for i in range(LOG_LINES)], task_id
            assert self.swarm.done[task_id] == 1, (task_id, self.swarm.done[task_id])
        # no running task was handed to another delegate (if one was, say what the replicas did)
        assert self.swarm.taken_back == [], (self.swarm.taken_back[:3], self.story(
            self.swarm.taken_back[0][0] if self.swarm.taken_back else ""))

    def story(self, task_id: str) -> list[str]:
        return [ln[:300] for m in self.replicas if m.process for ln in m.process.lines
                if (task_id and task_id in ln) or "leader" in ln or "database" in ln][:40]


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with Postgres() as pg:
        yield pg


@pytest.fixture
async def cluster(postgres: Postgres, tmp_path: Path) -> AsyncIterator[Cluster]:
    raise_fd_limit()
    name = "test_" + uuid.uuid4().hex[:16]  # a database of its own
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = postgres.url.rsplit("/", 1)[0] + "/" + name
    ports = [free_port(), free_port()]
    balancer = HAProxy(ports)
    replicas = []
    for i, port in enumerate(ports):
        m = Manager(tmp_path / f"replica{i}", "--database-url", url,
                    "--key-file", str(tmp_path / "manager.key"),  # one key for all replicas
                    "--public-url", balancer.url, "--tick-s", "0.2", "--rebroadcast-s", "1",
                    "--log-level", "INFO")
        m.port = port
        replicas.append(m)
    swarm: Swarm | None = None
    try:
        for m in replicas:
            await asyncio.to_thread(m.start)
        await asyncio.to_thread(balancer.start)
        env = replicas[0].env
        assert replicas[1].env["DELEGATE_TOKEN"] == env["DELEGATE_TOKEN"]  # one account, one DB
        swarm = Swarm(balancer.url, env["ACCOUNT_ID"], env["DELEGATE_TOKEN"], DELEGATES,
                      tmp_path / "work", heartbeat_s=1.0, log_lines=LOG_LINES)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            await swarm.start()
            await swarm.wait_connected(within_s=60)
            yield Cluster(postgres, replicas, balancer, swarm, session, ports)
    finally:  # whatever failed, nothing is left running
        if swarm is not None:
            await swarm.close()
        for m in replicas:
            await asyncio.to_thread(m.stop)
        await asyncio.to_thread(balancer.close)
        if postgres.process is None:  # a test stopped it
            await asyncio.to_thread(postgres.start)


async def test_sigkill_of_a_replica_mid_run_loses_nothing(cluster: Cluster) -> None:
    swarm = cluster.swarm
    ids: list[str] = []

    async def submit_steadily() -> None:
        for _ in range(120):
            ids.append(await cluster.submit())
            await asyncio.sleep(0.02)

    for port in cluster.ports:  # each replica shows every delegate, wherever it registered
        status, answer = await cluster.call("GET", "/api/setup/delegates",
                                            base=f"http://127.0.0.1:{port}")
        assert status == 200, answer
        shown = [d for g in answer["resource"]["groups"] for d in g["delegates"]]
        assert sum(d["status"] == "CONNECTED" for d in shown) == DELEGATES, (port, shown)
    submitting = asyncio.create_task(submit_steadily())
    while len(swarm.done) < 30:  # tasks offered, acquired, logged and reported on both replicas
        await asyncio.sleep(0.02)
    victim = cluster.replicas[0].process
    assert victim is not None
    victim.send(signal.SIGKILL)
    await submitting
    # every delegate comes back through the balancer, to the replica that is left
    await swarm.wait_connected(within_s=60)
    await swarm.wait_done(ids, within_s=90)
    await cluster.check_every_task_ended_once(ids)
    assert all(len(set(swarm.acquired_by[t])) == 1 for t in ids)  # each ran on one delegate
    # the survivor also offers new work to the delegates that moved over to it
    late = [await cluster.submit() for _ in range(10)]
    await swarm.wait_done(late, within_s=30)
    await cluster.check_every_task_ended_once(late)


async def test_postgres_down_20_s_replicas_answer_503_and_recover(cluster: Cluster) -> None:
    swarm = cluster.swarm
    swarm.hold_s = 3.0  # tasks still running when the database goes
    before = [await cluster.submit() for _ in range(20)]
    while not all(t in swarm.acquired_at for t in before):
        await asyncio.sleep(0.05)
    await asyncio.to_thread(cluster.pg.stop)
    answers: list[tuple[int, str]] = []
    started = asyncio.get_running_loop().time()
    while asyncio.get_running_loop().time() - started < 20:
        status, body = await cluster.call("GET", f"/api/setup/tasks/{before[0]}")
        answers.append((status, body["responseMessages"][0]["code"] if status != 200 else ""))
        await asyncio.sleep(0.5)
    assert answers and all(a == (503, "DATABASE_UNAVAILABLE") for a in answers), answers
    await asyncio.to_thread(cluster.pg.start)
    swarm.hold_s = 0.0
    await swarm.wait_done(before, within_s=60)  # results held through the outage all land
    await cluster.check_every_task_ended_once(before)
    await swarm.wait_connected(within_s=60)
    after = [await cluster.submit() for _ in range(20)]
    await swarm.wait_done(after, within_s=60)
    await cluster.check_every_task_ended_once(after)
