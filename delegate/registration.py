"""Registration and the ECS keep-alive.

`Registrar.ensure()` registers when needed (first start, or after the manager said it does not know
this delegate), retrying under `REGISTER_POLICY`; a SELF_DESTRUCT answer raises `SelfDestruct`.
The delegate id and, on ECS, the (sequence, token) pair are kept and re-sent, so whatever the manager
does (restart, outage, forget us) the delegate comes back as the same delegate.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Protocol
from urllib.parse import urlsplit

from delegate import __version__, log, retry
from delegate.client import ManagerClient
from delegate.config import Settings
from delegate.errors import (
    AuthRejected,
    DelegateError,
    ManagerRejected,
    ProtocolViolation,
    SelfDestruct,
    TokenRevoked,
    TransientError,
)
from delegate.identity import Registration
from delegate.liveness import Liveness
from delegate.metrics import Metrics
from delegate.sequence import SequenceConfig, SequenceFile
from protocol import wire

_log = log.get("delegate.registration")

#: through outages and wrong tokens: capped backoff, and a give-up after which the agent exits 1
#: so that the watcher (or ECS) starts a fresh process
REGISTER_POLICY = retry.RetryPolicy(
    initial_s=0.25, max_backoff_s=10.0, max_attempts=None, max_total_s=900.0,
    # a bad answer (ProtocolViolation) is one bad answer: asked again, never the delegate's end
    retry_on=(TransientError, AuthRejected, ManagerRejected, ProtocolViolation),
    logged_by_caller=(AuthRejected,),
)


class Workload(Protocol):
    """What the registration tells the manager about the work (the task runner)."""

    def supported_task_types(self) -> list[str]: ...

    def executing(self) -> list[str]: ...


class Registrar:
    def __init__(self, settings: Settings, client: ManagerClient, registration: Registration,
                 liveness: Liveness, metrics: Metrics, workload: Workload) -> None:
        self._s = settings
        self._client = client
        self.registration = registration
        self._liveness = liveness
        self._metrics = metrics
        self._workload = workload
        self._seqfile = SequenceFile(settings.sequence_file) if settings.is_ecs else None
        self.seq: SequenceConfig | None = None
        self._needed = True
        self._ip = _local_ip(settings.manager_host_and_port)
        #: the watcher's version: from the environment it started us with, then from its heartbeat
        #: file (a self-upgraded watcher keeps this process); None without a watcher
        self.watcher_version: str | None = settings.harness_watcher_version

    def params(self, *, keep_alive: bool = False) -> wire.DelegateParams:
        s, seq = self._s, self.seq
        return wire.DelegateParams(
            delegate_id=self.registration.delegate_id,
            account_id=s.account_id,
            ip=self._ip,
            host_name=s.hostname,
            delegate_name=s.delegate_name,
            delegate_group_name=s.delegate_group_name,
            delegate_group_id=s.delegate_group_id,
            delegate_profile_id=s.delegate_profile,
            description=s.delegate_description,
            version=__version__,
            delegate_type=s.delegate_type,
            delegate_random_token=seq.random_token if seq else None,
            sequence_num=seq.sequence_num if seq else None,
            last_heart_beat=int(time.time() * 1000),
            keep_alive_packet=keep_alive,
            polling_mode_enabled=s.poll_for_tasks,
            tags=list(s.delegate_tags),
            supported_task_types=self._workload.supported_task_types(),
            currently_executing_delegate_tasks=self._workload.executing(),
            delegate_instance_id=self.registration.instance_id,
            watcher_version=self.watcher_version,
        )

    def watcher_seen(self, version: str) -> None:
        """The watcher's heartbeat file names its version: the next keep-alive or heartbeat says so."""
        if version != self.watcher_version:
            _log.info("watcher.version", version=version, before=self.watcher_version)
            self.watcher_version = version

    def forgotten(self) -> None:
        """The manager answered 404 for this delegate: register again before the next call."""
        self._needed = True

    async def register(self, *, keep_alive: bool = False) -> None:
        if self._seqfile is not None and self.seq is None:
            self.seq = await asyncio.to_thread(self._seqfile.load_or_create)
        answer = await self._client.register(self.params(keep_alive=keep_alive))
        if answer.action == wire.RegisterAction.SELF_DESTRUCT:
            raise SelfDestruct("the manager told this delegate to self-destruct")
        known = self.registration.delegate_id
        first = known is None or self._needed
        if known and answer.delegate_id != known:
            _log.warning("manager.identity_changed", old=known, new=answer.delegate_id)
        self.registration.confirm(answer.delegate_id)
        await self.store_sequence(answer.delegate_random_token, answer.sequence_num)
        self._needed = False
        self._metrics.registrations.inc()
        self._liveness.acked()
        if first:
            _log.info("manager.registered", delegate_id=answer.delegate_id,
                      sequence_num=answer.sequence_num, keep_alive=keep_alive)

    async def store_sequence(self, token: str | None, seq: str | None) -> None:
        if self._seqfile is None or (token is None and seq is None):
            return
        self.seq = await asyncio.to_thread(self._seqfile.update, token, seq)

    async def ensure(self) -> str:
        """Register if needed (retrying under REGISTER_POLICY); the delegate id."""
        if self._needed or self.registration.delegate_id is None:
            await retry.call("register", self._attempt, REGISTER_POLICY)
        delegate_id = self.registration.delegate_id
        assert delegate_id is not None
        return delegate_id

    async def _attempt(self) -> None:
        try:
            await self.register()
        except (SelfDestruct, TokenRevoked):
            raise
        except AuthRejected as exc:
            self._liveness.failed(str(exc))
            _log.error("manager.auth_rejected", error=str(exc))
            raise
        except DelegateError as exc:
            self._liveness.failed(str(exc))
            raise

    async def keep_alive(self) -> None:
        """ECS: re-send DelegateParams with keepAlivePacket=true so the slot never goes stale."""
        while True:
            await asyncio.sleep(self._s.delegate_keepalive_interval_s)
            try:
                await self.ensure()
                await self.register(keep_alive=True)
            except (SelfDestruct, TokenRevoked):
                raise
            except DelegateError as exc:
                self._liveness.failed(str(exc))
                _log.warning("keepalive.failed", error=str(exc))

    async def unregister(self) -> None:
        delegate_id = self.registration.delegate_id
        if delegate_id is None:
            return
        await self._client.unregister(wire.DelegateUnregisterRequest(
            delegate_id=delegate_id, host_name=self._s.hostname,
            delegate_group_name=self._s.delegate_group_name,
            delegate_instance_id=self.registration.instance_id,
        ))
        self.registration.withdraw()
        self._metrics.connected.set(0)
        _log.info("manager.unregistered", delegate_id=delegate_id)


def _local_ip(manager_url: str) -> str:
    """The address of the interface that reaches the manager: a UDP socket "connected" to it
    (no packet is sent) is bound by the kernel to the source address its route would use."""
    parts = urlsplit(manager_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_DGRAM)
        family, _, _, _, address = infos[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(address)
            return str(probe.getsockname()[0])
    except (OSError, IndexError, UnicodeError):
        return ""
