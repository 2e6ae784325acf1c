"""The agent: wires the parts together, supervises them, and shuts down in two phases.

Phase 1 (on SIGTERM, or a watcher's stop request): stop taking work, let running tasks finish within
`DELEGATE_SHUTDOWN_BUDGET_S` (kept below ECS's stopTimeout), cancel what is left (those results say
RETRY_ON_OTHER_DELEGATE), wait for results to be sent. Phase 2: stop the loops, unregister, close.
A second SIGTERM skips the wait. Exit codes are a contract with the watcher (`ExitCode`).
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import signal
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from delegate import log
from delegate.channel import ChannelSettings, WatcherChannel
from delegate.client import ManagerClient
from delegate.config import Settings
from delegate.connection import Connection
from delegate.errors import DelegateError, SelfDestruct
from delegate.health import HealthServer
from delegate.metrics import Metrics
from delegate.supervise import Supervisor
from delegate.tasks.profile import ProfileRunner
from delegate.tasks.runner import TaskRunner
from protocol.auth import TokenProvider

_log = log.get("delegate.agent")


def plain_http_warning(manager_url: str) -> str | None:
    """Why MANAGER_HOST_AND_PORT is unsafe (plain http to a host beyond loopback), or None."""
    url = urlsplit(manager_url)
    if url.scheme != "http" or not url.hostname:
        return None
    host = url.hostname
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return (f"MANAGER_HOST_AND_PORT is plain http to {host}: the delegate token and every task "
            "travel unencrypted; use https://")


class ExitCode(enum.IntEnum):
    STOPPED = 0  # asked to stop; do not restart unless the container wants it
    CRASHED = 1  # a supervised part died: restart me
    CONFIG = 3  # bad environment: restarting will not help
    SELF_DESTRUCT = 4  # the manager told this delegate to go away: do not restart


class Agent:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.instance_id = str(uuid.uuid4())
        self.metrics = Metrics()
        tokens = TokenProvider(
            token_hex=settings.token_hex,
            account_id=settings.account_id,
            host_name=settings.hostname,
            audience=settings.manager_host_and_port,
        )
        self.client = ManagerClient(settings, tokens)
        self.connection = Connection(
            settings, self.client, self.metrics, instance_id=self.instance_id,
            supported_task_types=lambda: self.runner.supported_task_types(),
            executing=lambda: self.runner.executing(),
        )
        self.runner = TaskRunner(
            settings, self.client, self.metrics, instance_id=self.instance_id,
            registered=self.connection.registered, catch_up=self._catch_up,
        )
        self.connection.sink = self.runner
        self.profiles = ProfileRunner(self.client, settings.delegate_work_dir,
                                      settings.delegate_profile_interval_s,
                                      self.connection.registered)
        self.health = HealthServer(settings.delegate_health_port, self.metrics, self.healthy)
        self._supervisor = Supervisor()
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        #: short-lived tasks (catch-up polls), kept so they are neither collected nor leaked
        self._background: set[asyncio.Task[Any]] = set()
        channel = ChannelSettings.from_settings(settings)  # set when a watcher started this process
        self.channel = None if channel is None else WatcherChannel(
            channel, self.runner, healthy=self.healthy,
            delegate_id=lambda: self.connection.delegate_id, request_stop=self.request_stop)

    def healthy(self) -> tuple[bool, str]:
        return self.connection.healthy()

    def request_stop(self, reason: str) -> None:
        """Signal handler body: only sets flags; shutdown is ordinary async code."""
        if self._stop.is_set():
            self._force.set()
            _log.warning("agent.stop_forced", reason=reason)
        else:
            _log.info("agent.stop_requested", reason=reason)
            self._stop.set()

    def _catch_up(self) -> None:
        """A streaming delegate that refused offers while full asks for queued work once freed."""
        if self.settings.poll_for_tasks or self._stop.is_set():
            return
        if any(t.get_name() == "tasks.catch_up" for t in self._background):
            return  # one at a time is enough
        task = asyncio.get_running_loop().create_task(self.connection.poll_once(),
                                                      name="tasks.catch_up")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def run(self) -> ExitCode:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        started = time.monotonic()
        _log.info("agent.starting", account_id=self.settings.account_id,
                  hostname=self.settings.hostname, group=self.settings.delegate_group_name,
                  polling=self.settings.poll_for_tasks, delegate_type=self.settings.delegate_type)
        insecure = plain_http_warning(self.settings.manager_host_and_port)
        if insecure is not None:
            _log.warning("agent.insecure_manager_url", problem=insecure)
        try:
            await self.health.start()
        except OSError as exc:
            _log.error("health.bind_failed", port=self.settings.delegate_health_port,
                       error=str(exc),
                       hint="set DELEGATE_HEALTH_PORT to a free port (0 picks one)")
            return ExitCode.CONFIG
        sup = self._supervisor
        sup.start("connection", self.connection.run())
        sup.start("results.sender", self.runner.sender.run())
        sup.start("profile", self.profiles.run())
        sup.start("registered.log", self._log_registered(started))
        sup.start("loop.lag", self._watch_loop_lag())
        if self.channel is not None:
            sup.start("watcher.channel", self.channel.run())
        code = ExitCode.STOPPED
        try:
            ended = await sup.wait_first_exit(self._stop)
            if ended is not None:
                code = self._why_ended(ended)
        finally:
            await self._shutdown(code)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        return code

    async def _log_registered(self, started: float) -> None:
        await self.connection.registered.wait()
        _log.info("agent.ready", delegate_id=self.connection.delegate_id,
                  seconds=round(time.monotonic() - started, 3))
        await asyncio.Event().wait()  # stay alive: a supervised task must not simply end

    async def _watch_loop_lag(self, every_s: float = 0.1) -> None:
        """Event-loop lag, for /metrics: a blocked loop shows here before it shows anywhere else."""
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(every_s)
            self.metrics.loop_lag.observe(max(time.monotonic() - t0 - every_s, 0.0))

    def _why_ended(self, task: asyncio.Task[Any]) -> ExitCode:
        if task.cancelled():
            _log.error("agent.part_cancelled", part=task.get_name())
            return ExitCode.CRASHED
        exc = task.exception()
        if exc is not None and _contains(exc, SelfDestruct):
            _log.warning("delegate.self_destruct", note="the manager removed this delegate")
            return ExitCode.SELF_DESTRUCT
        _log.error("agent.part_died", part=task.get_name(),
                   error=repr(exc) if exc else "returned unexpectedly")
        return ExitCode.CRASHED

    async def _shutdown(self, code: ExitCode) -> None:
        budget = self.settings.delegate_shutdown_budget_s
        t0 = time.monotonic()
        if self.channel is not None:
            self.channel.stopping(code.name.lower())
        if code == ExitCode.STOPPED:
            drain = asyncio.create_task(self.runner.drain(budget), name="shutdown.drain")
            forced = asyncio.create_task(self._force.wait(), name="shutdown.force")
            await asyncio.wait([drain, forced], return_when=asyncio.FIRST_COMPLETED)
            forced.cancel()
            if not drain.done():
                drain.cancel()
                await asyncio.gather(drain, return_exceptions=True)
        else:
            self.runner.stop_acquiring()
        await self._supervisor.cancel_all("delegate shutting down")
        for task in list(self._background):
            task.cancel()
        # After a watcher handover the newer process owns the registration: leave it registered.
        handed_over = self.channel is not None and self.channel.handed_over
        if code != ExitCode.SELF_DESTRUCT and not handed_over:
            try:
                await asyncio.shield(asyncio.wait_for(self.connection.unregister(), 2.0))
            except (DelegateError, TimeoutError) as exc:
                _log.warning("manager.unregister_failed", error=str(exc))
        await self.health.stop()
        await self.client.close()
        _log.info("agent.stopped", exit_code=int(code), seconds=round(time.monotonic() - t0, 3),
                  unsent_results=len(self.runner.sender.unsent))


def _contains(exc: BaseException, kind: type[BaseException]) -> bool:
    if isinstance(exc, kind):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_contains(e, kind) for e in exc.exceptions)
    return False
