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
from typing import Any
from urllib.parse import urlsplit

from delegate import log
from delegate.channel import ChannelSettings, WatcherChannel
from delegate.client import ManagerClient
from delegate.config import Settings
from delegate.connection import Connection
from delegate.errors import DelegateError, SelfDestruct, Superseded, TokenRevoked
from delegate.health import HealthServer
from delegate.identity import Registration
from delegate.liveness import Liveness
from delegate.metrics import Metrics
from delegate.polling import Poller
from delegate.registration import Registrar
from delegate.stream import Stream
from delegate.supervise import Supervisor
from delegate.tasks.profile import ProfileRunner
from delegate.tasks.runner import TaskRunner
from delegate.tasks.spool import ResultSender, ResultSpool
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
    TOKEN_REVOKED = 5  # the manager refused the token as revoked or expired: do not restart


class Agent:
    """Builds its parts bottom-up, each given what it needs; none calls back into a later one."""

    def __init__(self, settings: Settings, registration: Registration | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        #: who this delegate is, once the manager confirms it (the instance id is made up front)
        self.registration = registration or Registration()
        self.instance_id = self.registration.instance_id
        self.liveness = Liveness(self.registration, self.metrics, settings.delegate_heartbeat_stale_s)
        tokens = TokenProvider(
            token_hex=settings.token_hex,
            account_id=settings.account_id,
            host_name=settings.hostname,
            audience=settings.manager_host_and_port,
        )
        self.client = ManagerClient(settings, tokens)
        self.sender = ResultSender(self.client, ResultSpool(settings.delegate_work_dir),
                                   self.registration)
        self.runner = TaskRunner(settings, self.client, self.metrics, self.registration, self.sender)
        self.registrar = Registrar(settings, self.client, self.registration, self.liveness,
                                   self.metrics, workload=self.runner)
        link = (Poller if settings.poll_for_tasks else Stream)(
            settings, self.client, self.registrar, self.liveness, self.metrics, sink=self.runner)
        self.connection = Connection(settings, self.registrar, link)
        self.profiles = ProfileRunner(self.client, settings.delegate_work_dir,
                                      settings.delegate_profile_interval_s, self.registration)
        self.health = HealthServer(settings.delegate_health_port, self.metrics,
                                   self.liveness.verdict)
        self._supervisor = Supervisor()
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._superseded = False
        channel = ChannelSettings.from_settings(settings)  # set when a watcher started this process
        self.channel = None if channel is None else WatcherChannel(
            channel, self.runner, healthy=self.liveness.verdict, registration=self.registration,
            request_stop=self.request_stop, watcher_version=self.registrar.watcher_seen)

    def healthy(self) -> tuple[bool, str]:
        return self.liveness.verdict()

    def request_stop(self, reason: str) -> None:
        """Signal handler body: only sets flags; shutdown is ordinary async code."""
        if self._stop.is_set():
            self._force.set()
            _log.warning("agent.stop_forced", reason=reason)
        else:
            _log.info("agent.stop_requested", reason=reason)
            self._stop.set()

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
        sup.start("results.sender", self.sender.run())
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
        who = await self.registration.wait()
        _log.info("agent.ready", delegate_id=who.delegate_id,
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
            _log.warning("delegate.self_destruct", note="the manager removed this delegate",
                         reason=_first(exc, SelfDestruct))
            return ExitCode.SELF_DESTRUCT
        if exc is not None and _contains(exc, TokenRevoked):
            _log.error("delegate.token_revoked", note="the manager refused the delegate token as "
                       "revoked or expired; install a new one (DELEGATE_TOKEN)")
            return ExitCode.TOKEN_REVOKED
        if exc is not None and _contains(exc, Superseded):
            _log.warning("delegate.superseded", note="another process registered as this "
                         "delegate; finishing what runs, then exiting")
            self._superseded = True  # the registration is the newer process's now
            return ExitCode.STOPPED
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
        # After a watcher handover the newer process owns the registration: leave it registered.
        handed_over = self.channel is not None and self.channel.handed_over
        if code not in (ExitCode.SELF_DESTRUCT, ExitCode.TOKEN_REVOKED) and not handed_over \
                and not self._superseded:
            try:
                await asyncio.shield(asyncio.wait_for(self.registrar.unregister(), 2.0))
            except (DelegateError, TimeoutError) as exc:
                _log.warning("manager.unregister_failed", error=str(exc))
        await self.health.stop()
        await self.client.close()
        _log.info("agent.stopped", exit_code=int(code), seconds=round(time.monotonic() - t0, 3),
                  unsent_results=len(self.sender.unsent))


def _first(exc: BaseException, kind: type[BaseException]) -> str:
    """The message of the first `kind` inside `exc` (which may be an exception group)."""
    if isinstance(exc, kind):
        return str(exc)
    if isinstance(exc, BaseExceptionGroup):
        return next((m for e in exc.exceptions if (m := _first(e, kind))), "")
    return ""


def _contains(exc: BaseException, kind: type[BaseException]) -> bool:
    if isinstance(exc, kind):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_contains(e, kind) for e in exc.exceptions)
    return False
