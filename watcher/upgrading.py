"""Upgrades, as steps of the watcher's loop: check the published versions on an interval with
jitter, download and verify a new one, start it beside the running delegate (the supervisor then
promotes or rolls back), and replace the watcher itself in place, taking back its children after.

A mixin of `supervisor.Watcher`: it only reads and sets the slots the supervisor owns, declared below.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import watcher
from watcher import channel as ch
from watcher import process, selfupgrade
from watcher.child import Child, ProcState, Purpose, Role
from watcher.log import log
from watcher.settings import Settings
from watcher.upgrade import ChecksumMismatch, Published, Store, UpgradeError


class UpgradeSteps:
    # the supervisor's state this mixin works on
    s: Settings
    channel: ch.Channel
    store: Store
    self_store: Store
    current: Child | None
    candidate: Child | None
    retiring: list[Child]
    artifact: str | None
    failures: int
    _pending: tuple[Published, Path] | None
    _self_upgrade: tuple[Published, Path] | None
    _wake: asyncio.Event
    _exits: list[tuple[int, int]]
    _init_done: bool

    # the supervisor's transitions this mixin uses
    def _spawn(self, artifact: str | None, role: Role, purpose: Purpose,
               now: float) -> Child | None:
        raise NotImplementedError

    def _live(self) -> list[Child]:
        raise NotImplementedError

    def _to(self, state: ProcState, why: str, **fields: Any) -> None:
        raise NotImplementedError

    def _child_exited(self, pid: int, code: int) -> None:
        raise NotImplementedError

    def _running_version(self) -> str | None:
        return self.current.version if self.current is not None else None

    async def _check_loop(self, store: Store, url: str, location: str,
                          offer: Callable[[Published], Awaitable[None]]) -> None:
        await asyncio.sleep(self.s.upgrade_first_check_s)
        while True:
            try:
                published = await store.check(url, location, self.s.download_timeout_s)
                await offer(published)
            except ChecksumMismatch as exc:
                log.error(f"upgrade.{store.kind}_checksum_mismatch", error=str(exc),
                          note="refused; the running process carries on")
            except UpgradeError as exc:
                log.warning(f"upgrade.{store.kind}_check_failed", error=str(exc))
            except Exception as exc:  # noqa: BLE001 - a checker bug must not stop supervision
                log.error(f"upgrade.{store.kind}_check_crashed", error=repr(exc))
            jitter = random.uniform(-self.s.upgrade_check_jitter_s, self.s.upgrade_check_jitter_s)
            await asyncio.sleep(self.s.upgrade_check_interval_s + jitter)

    async def _offer_delegate(self, published: Published) -> None:
        if published.version in (self._running_version(), self.artifact):
            return
        if self._pending is not None or self.candidate is not None:
            return
        if published.version in self.store.failed():
            log.debug("upgrade.skipped_failed_version", version=published.version)
            return
        log.info("upgrade.found", version=published.version, running=self._running_version())
        path = await self.store.fetch(self.s.delegate_storage_url or "", published,
                                      self.s.download_timeout_s)
        log.info("upgrade.verified", version=published.version, sha256=published.sha256)
        self._pending = (published, path)
        self._wake.set()

    def _maybe_upgrade(self, now: float) -> None:
        cur = self.current
        if self._pending is None or self.candidate is not None or self.retiring:
            return
        if cur is None or cur.state != ProcState.RUNNING:
            return
        published, _ = self._pending
        self.channel.send(cur.pid, ch.UPGRADING, version=published.version)
        log.info("upgrade.starting", version=published.version, old_version=cur.version)
        self.candidate = self._spawn(published.version, Role.CANDIDATE, Purpose.UPGRADE, now)
        if self.candidate is None:
            self.store.mark_failed(published.version)
            self._pending = None

    async def _offer_watcher(self, published: Published) -> None:
        if published.version == watcher.__version__ or self._self_upgrade is not None:
            return
        if published.version in self.self_store.failed():
            return
        log.info("upgrade.watcher_found", version=published.version, running=watcher.__version__)
        path = await self.self_store.fetch(self.s.watcher_storage_url or "", published,
                                           self.s.download_timeout_s)
        if not await selfupgrade.sanity_check(path, published.version):
            self.self_store.mark_failed(published.version)
            return
        self._self_upgrade = (published, path)
        self._wake.set()

    def _maybe_self_upgrade(self) -> None:
        if self._self_upgrade is None or self.candidate is not None or self.retiring:
            return
        published, path = self._self_upgrade
        self._self_upgrade = None
        children = [c for c in self._live()]
        handoff = {"children": [c.handoff(self.channel.offset(c.pid)) for c in children],
                   "failures": self.failures, "init_done": self._init_done,
                   "from_version": watcher.__version__}
        for child in children:
            if child.watch is not None:
                child.watch.close()
        self.self_store.set_current(published.version, None)
        try:
            selfupgrade.exec_new(self.channel, path, handoff, published.version)
        except OSError as exc:
            log.error("upgrade.watcher_exec_failed", version=published.version, error=str(exc))
            self.self_store.mark_failed(published.version)
            for child in children:
                child.watch = process.ExitWatch(child.pid, self._child_exited)

    def _adopt(self) -> None:
        """After a self-upgrade: take back the processes the previous watcher image started."""
        handoff = selfupgrade.read_handoff(self.channel)
        if handoff is None:
            return
        self._init_done = bool(handoff.get("init_done", True))
        now = time.monotonic()
        for item in handoff.get("children", []):
            pid = int(item["pid"])
            alive = process.is_our_child(pid)
            if alive is False:
                log.warning("watcher.adopt_skipped", pid=pid, why="not a child of this process")
                continue
            child = Child(pid=pid, artifact=item.get("artifact"), role=Role(item["role"]),
                          state=ProcState(item["state"]), purpose=Purpose(item.get("purpose", "start")),
                          spawned_at=now, version=item.get("version"),
                          started=bool(item.get("started")), ready=bool(item.get("ready")),
                          heartbeat_seen_at=now)
            self.channel.set_offset(pid, int(item.get("offset", 0)))
            if child.role == Role.CURRENT:
                self.current = child
            elif child.role == Role.CANDIDATE:
                self.candidate = child
            else:
                self.retiring.append(child)
            if alive is True:
                child.watch = process.ExitWatch(pid, self._child_exited)
            else:
                self._exits.append((pid, int(alive)))
            log.info("watcher.adopted", pid=pid, role=child.role.value, version=child.version)
        if self.current is not None:
            self._to(self.current.state, "adopted after self-upgrade", pid=self.current.pid)
        log.info("upgrade.watcher_completed", version=watcher.__version__,
                 from_version=handoff.get("from_version"))
