"""The delegate processes the watcher runs: the current one, a candidate beside it during an
upgrade or a replacement, and retiring ones draining. Spawning, reading their channel messages and
heartbeats, killing; no decisions (those are the supervisor's, through its state machine).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import watcher
from watcher import channel as ch
from watcher import process
from watcher.child import Child, Purpose, Role
from watcher.log import log
from watcher.settings import Settings
from watcher.upgrade import Verified

KILL_EVENTS = {"start_timeout": "delegate.start_timeout", "hung": "delegate.hung",
               "not_ready": "delegate.not_ready", "drain_timeout": "delegate.drain_timeout",
               "stop_timeout": "delegate.stop_timeout"}
MEMORY_CHECK_EVERY_S = 5.0
MESSAGE_EVENTS = {ch.DELEGATE_STOPPING: "delegate.stopping", ch.DELEGATE_DRAINED: "delegate.drained"}


class Delegates:
    def __init__(self, settings: Settings, channel: ch.Channel, wake: asyncio.Event) -> None:
        self.s = settings
        self.channel = channel
        self._wake = wake
        self.current: Child | None = None
        self.candidate: Child | None = None
        self.retiring: list[Child] = []
        self.exits: list[tuple[int, int]] = []  # (pid, code) seen, not yet handled
        self.init_done = False  # INIT_SCRIPT ran (it runs once per container)
        self._last_state_write = 0.0
        self._last_memory_check = 0.0

    def live(self) -> list[Child]:
        return [c for c in (self.current, self.candidate, *self.retiring)
                if c is not None and c.exit_code is None]

    def find(self, pid: int) -> Child | None:
        return next((c for c in (self.current, self.candidate, *self.retiring)
                     if c is not None and c.pid == pid), None)

    def place(self, children: Sequence[Child]) -> None:
        """Put adopted processes back in their roles (after a self-upgrade)."""
        for child in children:
            if child.role == Role.CURRENT:
                self.current = child
            elif child.role == Role.CANDIDATE:
                self.candidate = child
            else:
                self.retiring.append(child)

    def exited(self, pid: int, code: int) -> None:
        self.exits.append((pid, code))
        self._wake.set()

    def spawn(self, artifact: str | None, verified: Verified | None, role: Role, purpose: Purpose,
              now: float) -> Child | None:
        """Start the image's delegate (`artifact` None) or an installed version from its verified
        sealed copy; None (logged) if it cannot be started."""
        argv = list(self.s.delegate_command) if verified is None else [sys.executable, "-P", verified.path]
        env = dict(os.environ)
        env[ch.ENV_DIR] = str(self.channel.root)
        env[ch.ENV_HEARTBEAT] = f"{self.s.heartbeat_interval_s:g}"
        env[ch.ENV_GONE] = f"{self.s.heartbeat_timeout_s:g}"
        env[ch.ENV_PID] = str(os.getpid())
        env[ch.ENV_VERSION] = watcher.__version__
        if self.init_done:
            env["HARNESS_INIT_SCRIPT_DONE"] = "1"
        try:
            pid = process.spawn(argv, env, verified.fd if verified else None)
        except OSError as exc:
            log.error("delegate.spawn_failed", command=argv[0], error=str(exc),
                      hint="check WATCHER_DELEGATE_COMMAND and the image")
            return None
        self.init_done = True
        child = Child(pid=pid, artifact=artifact, role=role, purpose=purpose, spawned_at=now,
                      heartbeat_seen_at=now)
        child.watch = process.ExitWatch(pid, self.exited)
        log.info("delegate.spawned", delegate_pid=pid, role=role.value, purpose=purpose.value,
                 artifact=artifact or "image", keyid=verified.keyid if verified else None)
        return child

    def read(self, child: Child, now: float) -> bool:
        """Take in its messages and heartbeat; True when it has just said delegate-ready."""
        ready = False
        for name, args in self.channel.receive(child.pid):
            if name == ch.NEW_DELEGATE:
                child.version = str(args.get("version") or "") or None
                log.info("delegate.announced", delegate_pid=child.pid, version=child.version,
                         role=child.role.value)
            elif name == ch.DELEGATE_STARTED:
                child.started = True
                child.heartbeat_seen_at = now
                self.channel.send(child.pid, ch.GO_AHEAD)
            elif name == ch.DELEGATE_READY and not child.ready:
                child.ready = ready = True
            elif name in MESSAGE_EVENTS:
                log.info(MESSAGE_EVENTS[name], delegate_pid=child.pid, **args)
        state = self.channel.state(child.pid)
        if state is not None and state.get("heartbeat") != child.heartbeat:
            child.heartbeat = state.get("heartbeat")
            child.heartbeat_seen_at = now
            child.started = True
        return ready

    def kill(self, child: Child, kind: str, why: str) -> None:
        if child.killed_for is None:
            child.killed_for = kind
            log.warning(KILL_EVENTS[kind], delegate_pid=child.pid, role=child.role.value, why=why)
        process.kill(child.pid, signal.SIGKILL)

    def over_memory(self, child: Child, now: float) -> bool:
        """Past WATCHER_DELEGATE_MEMORY_LIMIT_MIB (checked every 5 s)."""
        if self.s.memory_limit_mib <= 0 or now - self._last_memory_check < MEMORY_CHECK_EVERY_S:
            return False
        self._last_memory_check = now
        rss = process.rss_mib(child.pid)
        if rss is None or rss <= self.s.memory_limit_mib:
            return False
        log.warning("delegate.memory_exceeded", delegate_pid=child.pid, rss_mib=round(rss, 1),
                    limit_mib=self.s.memory_limit_mib, action="graceful replacement")
        return True

    def write_state(self, fields: dict[str, Any], force: bool = False) -> None:
        """The watcher's own heartbeat file (msg/data/watcher.json), every heartbeat interval."""
        now = time.monotonic()
        if not force and now - self._last_state_write < self.s.heartbeat_interval_s:
            return
        self._last_state_write = now
        try:
            self.channel.write_watcher_state({
                "pid": os.getpid(), "version": watcher.__version__,
                "heartbeat": int(time.time() * 1000), **fields,
                "delegates": [c.summary() for c in self.live()]})
        except OSError as exc:
            log.warning("watcher.state_write_failed", error=str(exc))
