"""A load generator: many delegates in one process, each with the delegate's own client and
connection code (`delegate.client.ManagerClient`, `delegate.connection.Connection`) and its own
sockets, so what is measured is the manager, not a delegate.

Each simulated delegate registers, streams (or polls) and heartbeats exactly as the real one does;
instead of running scripts it acquires every task it is offered and reports it done at once (a
log line first, when asked), recording when it acquired what. `Swarm.acquired` and `Swarm.done`
tell the bench and the failover tests who took which task, and how often.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from delegate import config, log
from delegate.client import ManagerClient
from delegate.connection import Connection
from delegate.errors import DelegateError, ManagerRejected
from delegate.identity import Registration
from delegate.liveness import Liveness
from delegate.metrics import Metrics
from delegate.polling import Poller, TaskEvent
from delegate.registration import Registrar
from delegate.stream import Stream
from protocol import wire
from protocol.auth import TokenProvider


def raise_fd_limit() -> int:
    """Raise RLIMIT_NOFILE to its hard limit (1,000 delegates need a few thousand sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class SimDelegate:
    """One delegate: the real registration, stream or poller, and liveness, wired as the agent
    wires them; itself the event sink and the workload (it acquires and completes at once)."""

    def __init__(self, swarm: Swarm, settings: config.Settings, metrics: Metrics) -> None:
        self.swarm = swarm
        self.registration = Registration()
        self.liveness = Liveness(self.registration, metrics,
                                 settings.delegate_heartbeat_stale_s)
        tokens = TokenProvider(token_hex=settings.token_hex, account_id=settings.account_id,
                               host_name=settings.hostname,
                               audience=settings.manager_host_and_port)
        self.client = ManagerClient(settings, tokens)
        self.running: set[str] = set()
        self.claimed: set[str] = set()  # offers being acted on
        self.work_wanted = asyncio.Event()
        registrar = Registrar(settings, self.client, self.registration, self.liveness, metrics,
                              workload=self)
        link = (Poller if settings.poll_for_tasks else Stream)(
            settings, self.client, registrar, self.liveness, metrics, sink=self)
        self.connection = Connection(settings, registrar, link)
        self._work: set[asyncio.Task[None]] = set()

    def supported_task_types(self) -> list[str]:
        return []

    def executing(self) -> list[str]:
        return sorted(self.running)

    @property
    def connected(self) -> bool:
        """Registered, and a heartbeat acknowledged since the last stream loss."""
        return self.liveness.verdict()[0] and self.liveness.last_error is None

    def on_events(self, events: Sequence[TaskEvent], source: str) -> None:
        for event in events:
            if isinstance(event, wire.DelegateTaskEvent) and event.delegate_task_id not in \
                    self.claimed:  # one offer at a time per task, as the task runner does
                self.claimed.add(event.delegate_task_id)
                job = asyncio.get_running_loop().create_task(self._take(event.delegate_task_id))
                self._work.add(job)
                job.add_done_callback(self._work.discard)

    async def _take(self, task_id: str) -> None:
        try:
            await self._acquire_and_run(task_id)
        finally:
            self.claimed.discard(task_id)

    async def _acquire_and_run(self, task_id: str) -> None:
        who = self.registration.identity
        if who is None:
            return
        try:
            await self.client.acquire(who, task_id)
        except ManagerRejected:
            return  # another delegate took it (409) or it is gone (410)
        except DelegateError:
            return  # the manager is away: the task stays queued, someone gets it later
        self.running.add(task_id)
        self.swarm.on_acquired(task_id, self)
        try:
            if self.swarm.hold_s:
                await asyncio.sleep(self.swarm.hold_s)
            if self.swarm.log_lines:
                lines = [wire.LogLine(seq=i, ts=int(time.time() * 1000), message=f"line {i}")
                         for i in range(self.swarm.log_lines)]
                batch = wire.LogBatch(lines=lines)
                await self._retry(lambda: self.client.send_logs(who.delegate_id, task_id, batch))
            result = wire.TaskResult(account_id=self.swarm.account_id,
                                     response_code=wire.ResponseCode.OK,
                                     response={"status": "SUCCEEDED"},
                                     delegate_instance_id=who.instance_id)
            await self._retry(lambda: self.client.send_result(who.delegate_id, task_id, result))
            self.swarm.on_done(task_id)
        except ManagerRejected as exc:
            self.swarm.taken_back.append((task_id, str(exc)))  # re-queued while it ran here
        finally:
            self.running.discard(task_id)

    async def _retry(self, call: Callable[[], Awaitable[object]]) -> None:
        """Like the delegate's result sender: keep trying through an outage (bounded here)."""
        for attempt in range(120):
            try:
                await call()
            except ManagerRejected:
                raise
            except DelegateError:
                await asyncio.sleep(min(0.1 * (attempt + 1), 1.0))
            else:
                return
        raise TimeoutError("manager unreachable for about two minutes")

    async def close(self) -> None:
        for job in list(self._work):
            job.cancel()
        await asyncio.gather(*self._work, return_exceptions=True)
        await self.client.close()


class Swarm:
    """`n` delegates against one manager URL (a manager or a balancer in front of replicas)."""

    def __init__(self, url: str, account_id: str, delegate_token: str, n: int, work_dir: Path,
                 *, heartbeat_s: float = 10.0, polling: bool = False, log_lines: int = 0,
                 hold_s: float = 0.0, group: str = "swarm") -> None:
        log.configure(level="WARNING", fmt="json")  # a thousand delegates' INFO lines: no
        self.account_id = account_id
        self.log_lines = log_lines
        self.hold_s = hold_s  # how long each task "runs" between acquire and its log and result
        self.acquired_at: dict[str, float] = {}
        self.acquired_by: dict[str, list[SimDelegate]] = defaultdict(list)
        self.done: dict[str, int] = defaultdict(int)
        #: tasks the manager took back from a delegate while it ran them (and why)
        self.taken_back: list[tuple[str, str]] = []
        self.done_event = asyncio.Event()
        self.metrics = Metrics()
        self.delegates: list[SimDelegate] = []
        for i in range(n):
            settings = config.load({
                "ACCOUNT_ID": account_id, "DELEGATE_TOKEN": delegate_token,
                "MANAGER_HOST_AND_PORT": url, "DELEGATE_TYPE": "SHELL_SCRIPT",
                "DELEGATE_HOSTNAME": f"swarm-{i:05d}", "DELEGATE_GROUP_NAME": group,
                "POLL_FOR_TASKS": str(polling).lower(), "DELEGATE_WORK_DIR": str(work_dir),
                "DELEGATE_HEARTBEAT_INTERVAL_S": str(heartbeat_s),
                "DELEGATE_HEARTBEAT_STALE_S": str(heartbeat_s * 4),
            })
            self.delegates.append(SimDelegate(self, settings, self.metrics))
        self._loops: list[asyncio.Task[None]] = []

    def on_acquired(self, task_id: str, who: SimDelegate) -> None:
        self.acquired_at.setdefault(task_id, time.perf_counter())
        self.acquired_by[task_id].append(who)

    def on_done(self, task_id: str) -> None:
        self.done[task_id] += 1
        self.done_event.set()

    def connected(self) -> int:
        return sum(d.connected for d in self.delegates)

    async def start(self, ramp_per_s: float = 500.0) -> None:
        """Start every delegate's connection loop, `ramp_per_s` a second (a fleet does not
        start in the same millisecond either)."""
        for i, d in enumerate(self.delegates):
            self._loops.append(asyncio.create_task(d.connection.run(), name=f"swarm.{i}"))
            if ramp_per_s and i % 50 == 49:
                await asyncio.sleep(50 / ramp_per_s)

    async def wait_connected(self, count: int | None = None, within_s: float = 120.0) -> float:
        """Wait until `count` (default all) delegates are connected; returns the seconds taken."""
        want = len(self.delegates) if count is None else count
        t0 = time.monotonic()
        while self.connected() < want:
            dead = [t for t in self._loops if t.done()]
            if dead:
                raise RuntimeError(f"a delegate loop ended: {dead[0].exception()!r}")
            if time.monotonic() - t0 > within_s:
                raise TimeoutError(f"{self.connected()}/{want} delegates connected")
            await asyncio.sleep(0.02)
        return time.monotonic() - t0

    async def wait_done(self, task_ids: Sequence[str], within_s: float) -> None:
        deadline = time.monotonic() + within_s
        while any(self.done.get(t, 0) == 0 for t in task_ids):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sum(1 for t in task_ids if not self.done.get(t))
                raise TimeoutError(f"{missing} of {len(task_ids)} tasks not done")
            self.done_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done_event.wait(), min(left, 0.5))

    async def close(self) -> None:
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await asyncio.gather(*(d.close() for d in self.delegates), return_exceptions=True)
