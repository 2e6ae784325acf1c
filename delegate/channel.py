"""The delegate's side of the watcher channel (contract: docs/watcher.md; the watcher's twin is
`watcher/channel.py`: the two packages never import each other, so the format is kept by contract).

Enabled when the watcher starts this process with HARNESS_WATCHER_CHANNEL_DIR set; without it the
delegate runs alone exactly as before. Under `<dir>`:

- `io/watcher/<pid>`: what this delegate tells the watcher (`new-delegate`, `delegate-started`,
  `delegate-ready`, `delegate-stopping`, `delegate-drained`), one line each;
- `io/delegate/<pid>`: what the watcher tells it (`go-ahead`, `stop-acquiring`, `resume`,
  `upgrading`), read from a kept offset, whole lines only;
- `data/delegate.<pid>.json`: its state and heartbeat, replaced atomically every interval;
- `data/watcher.json`: the watcher's heartbeat; if it goes stale the delegate says so in its log.

`stop-acquiring` stops taking offers; with `exitWhenDrainedS` it then drains (running tasks finish,
results are sent) and asks the agent to stop, exit code 0. `handover: true` means a newer process of
the same delegate already took over the registration, so this one must not unregister it.
`resume` cancels a pending drain and takes offers again (the watcher's rollback).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from delegate import __version__, log
from delegate.config import Settings
from delegate.identity import Registration
from protocol.limits import VERSION_PATTERN

_log = log.get("delegate.channel")
_NAME = re.compile(r"^[a-z][a-z-]{0,40}$")

_POLL_S = 0.1


class Runner(Protocol):
    @property
    def accepting(self) -> bool: ...

    def stop_acquiring(self) -> None: ...

    def resume(self) -> None: ...

    def executing(self) -> list[str]: ...

    async def drain(self, budget_s: float) -> bool: ...


@dataclass(frozen=True)
class ChannelSettings:
    root: Path
    heartbeat_interval_s: float = 10.0
    watcher_gone_after_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ChannelSettings | None:
        """The channel the watcher gave this process, from the one settings object (None: no watcher)."""
        if settings.harness_watcher_channel_dir is None:
            return None
        return cls(settings.harness_watcher_channel_dir,
                   settings.harness_watcher_heartbeat_interval_s,
                   settings.harness_watcher_gone_after_s)


class WatcherChannel:
    def __init__(
        self,
        settings: ChannelSettings,
        runner: Runner,
        *,
        healthy: Callable[[], tuple[bool, str]],
        registration: Registration,
        request_stop: Callable[[str], None],
        watcher_version: Callable[[str], None] = lambda _version: None,
    ) -> None:
        self._s = settings
        self._runner = runner
        self._healthy = healthy
        self._registration = registration
        self._request_stop = request_stop
        self._watcher_version = watcher_version
        self.pid = os.getpid()
        root = settings.root
        self._inbox = root / "io" / "delegate" / str(self.pid)
        self._outbox = root / "io" / "watcher" / str(self.pid)
        self._state_path = root / "data" / f"delegate.{self.pid}.json"
        self._watcher_path = root / "data" / "watcher.json"
        self._offset = 0
        self._ready_sent = False
        self._go_ahead = False
        self._drain: asyncio.Task[None] | None = None
        self.handed_over = False
        self.shutdown_pending = False
        self.shutdown_started = False
        self._watcher_gone = False
        self._last_state = 0.0
        self._started_wall = time.time()

    # --- the supervised task -------------------------------------------------------------------

    async def run(self) -> None:
        for sub in ("io/watcher", "io/delegate", "data"):
            (self._s.root / sub).mkdir(parents=True, exist_ok=True)
        self._send("new-delegate", version=__version__, pid=self.pid)
        self._write_state()
        self._send("delegate-started")
        _log.info("watcher_channel.open", dir=str(self._s.root), pid=self.pid)
        try:
            while True:
                self._receive()
                if not self._ready_sent and self._healthy()[0]:
                    self._ready_sent = True
                    self._send("delegate-ready", delegateId=self._registration.delegate_id)
                now = time.monotonic()
                if now - self._last_state >= self._s.heartbeat_interval_s:
                    self._write_state()
                    self._check_watcher()
                await asyncio.sleep(_POLL_S)
        finally:
            if self._drain is not None:
                self._drain.cancel()
            self._write_state()

    def stopping(self, reason: str) -> None:
        """Called by the agent as its shutdown begins."""
        self.shutdown_started = True
        self._send("delegate-stopping", reason=reason)
        self._write_state()

    # --- messages ------------------------------------------------------------------------------

    def _send(self, name: str, **args: Any) -> None:
        line = name if not args else f"{name} {json.dumps(args, separators=(',', ':'))}"
        try:
            fd = os.open(self._outbox, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError as exc:
            _log.warning("watcher_channel.write_failed", error=str(exc))

    def _receive(self) -> None:
        try:
            with open(self._inbox, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        self._offset += end + 1
        for raw in chunk[: end + 1].decode("utf-8", "replace").splitlines():
            name, _, rest = raw.strip().partition(" ")
            if not _NAME.match(name):
                continue
            try:
                args = json.loads(rest) if rest else {}
            except ValueError:
                args = {}
            self._handle(name, args if isinstance(args, dict) else {})

    def _handle(self, name: str, args: dict[str, Any]) -> None:
        _log.info("watcher_channel.message", message=name, **{k: v for k, v in args.items()
                                                                 if isinstance(v, str | int | float | bool)})
        if name == "go-ahead":
            self._go_ahead = True
        elif name == "stop-acquiring":
            self._runner.stop_acquiring()
            self.handed_over = self.handed_over or bool(args.get("handover"))
            budget = args.get("exitWhenDrainedS")
            if isinstance(budget, int | float) and budget > 0 and self._drain is None:
                self.shutdown_pending = True
                self._drain = asyncio.create_task(self._drain_then_stop(float(budget)),
                                                  name="watcher_channel.drain")
            self._write_state()
        elif name == "resume":
            if self._drain is not None:
                self._drain.cancel("resumed by the watcher")
                self._drain = None
            self.shutdown_pending = False
            self.handed_over = False
            self._runner.resume()
            self._write_state()
        elif name == "upgrading":
            pass  # informational: a new version is starting beside this one

    async def _drain_then_stop(self, budget_s: float) -> None:
        finished = await self._runner.drain(budget_s)
        self._send("delegate-drained", finished=finished)
        self._request_stop("watcher: stop-acquiring")

    # --- state and the watcher's heartbeat -----------------------------------------------------

    def _write_state(self) -> None:
        self._last_state = time.monotonic()
        ok, _reason = self._healthy()
        state = {
            "pid": self.pid, "version": __version__, "heartbeat": int(time.time() * 1000),
            "startedAt": int(self._started_wall * 1000), "delegateId": self._registration.delegate_id,
            "healthy": ok, "accepting": self._runner.accepting,
            "executing": len(self._runner.executing()), "goAhead": self._go_ahead,
            "shutdownPending": self.shutdown_pending, "shutdownStarted": self.shutdown_started,
        }
        tmp = self._state_path.with_name(f".{self._state_path.name}.tmp")
        try:
            tmp.write_text(json.dumps(state, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, self._state_path)
        except OSError as exc:
            _log.warning("watcher_channel.write_failed", error=str(exc))

    def _check_watcher(self) -> None:
        try:
            data = json.loads(self._watcher_path.read_text(encoding="utf-8"))
            age = time.time() - float(data.get("heartbeat")) / 1000.0
        except (OSError, ValueError, TypeError, AttributeError):
            data, age = None, time.time() - self._started_wall
        version = data.get("version") if isinstance(data, dict) else None
        if isinstance(version, str) and re.match(VERSION_PATTERN, version):
            self._watcher_version(version)
        gone = age > self._s.watcher_gone_after_s
        if gone:
            _log.warning("watcher.gone", seconds=round(age, 1),
                         note="no watcher heartbeat: this delegate is not supervised or upgraded")
        elif self._watcher_gone:
            _log.info("watcher.back")
        self._watcher_gone = gone
