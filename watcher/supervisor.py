"""The watcher's state machine: start the delegate, keep it alive, replace it, upgrade it, stop it.

One loop (`run`) wakes on a tick, a child's exit, a signal or a finished download, and calls `_step`,
which is the only place transitions happen; each is logged as `delegate.state` with `from`, `to` and
`why`. Signal handlers only count signals. Background tasks (the upgrade checks) are named and kept.

The program slot (`self.current`) moves through STOPPED -> STARTING -> RUNNING, and on a death to
BACKOFF -> STARTING again, or to FATAL (bad configuration, or too many failed starts) or EXITED
(stopped, self-destructed). An upgrade or a graceful replacement runs a second process beside it
(`candidate`); once that one is ready, the old one becomes `retiring`: told to stop acquiring, it
drains and exits while the new one already takes tasks. Finding, verifying and starting upgrades
(the delegate's and the watcher's own) lives in `upgrading.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import watcher
from watcher import channel as ch
from watcher import process
from watcher.child import Child, ProcState, Purpose, Role
from watcher.log import log
from watcher.settings import EXIT_CONFIG, Settings
from watcher.upgrade import Published, Store
from watcher.upgrading import UpgradeSteps

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_SELF_DESTRUCT = 4
_FORCE_KILL_AFTER_S = 3.0
_TERM_GRACE_S = 5.0
_MEMORY_CHECK_EVERY_S = 5.0


class Watcher(UpgradeSteps):
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.channel = ch.Channel(settings.channel_dir)
        self.store = Store(settings.versions_dir, "delegate")
        self.self_store = Store(settings.versions_dir, "watcher")
        self.current: Child | None = None
        self.candidate: Child | None = None
        self.retiring: list[Child] = []
        self.state = ProcState.STOPPED  # the program slot's state
        self.failures = 0  # failed starts (or deaths) in a row
        self.backoff_until = 0.0
        self.artifact: str | None = self._installed_artifact()
        self._pending: tuple[Published, Path] | None = None  # a verified delegate to upgrade to
        self._self_upgrade: tuple[Published, Path] | None = None
        self._signals = 0
        self._signals_handled = 0
        self._stopping_since: float | None = None
        self._exit_code: int | None = None
        self._exits: list[tuple[int, int]] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_state_write = 0.0
        self._last_memory_check = 0.0
        self._init_done = False

    # --- the loop -------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        log.info("watcher.starting", version=watcher.__version__, pid=os.getpid(),
                 work_dir=str(self.s.work_dir), artifact=self.artifact or "image")
        self._adopt()
        if self.s.delegate_storage_url:
            self._keep(self._check_loop(self.store, self.s.delegate_storage_url,
                                        self.s.delegate_check_location, self._offer_delegate),
                       "upgrade.delegate_check")
        if self.s.watcher_storage_url:
            self._keep(self._check_loop(self.self_store, self.s.watcher_storage_url,
                                        self.s.watcher_check_location, self._offer_watcher),
                       "upgrade.watcher_check")
        try:
            while True:
                self._step(time.monotonic())
                if self._exit_code is not None:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.s.tick_s)
                self._wake.clear()
        finally:
            for task in self._tasks:
                task.cancel("watcher stopping")
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            self._write_state(time.monotonic(), force=True)
        log.info("watcher.stopped", exit_code=self._exit_code)
        return self._exit_code or 0

    def _keep(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    def _on_signal(self) -> None:
        self._signals += 1
        self._wake.set()

    def _step(self, now: float) -> None:
        self._handle_signals(now)
        for child in self._live():
            if child.watch is not None:
                child.watch.poll()
        exits, self._exits = self._exits, []
        for pid, code in exits:
            self._on_exit(pid, code, now)
        for child in self._live():
            self._read(child, now)
        self._check_timeouts(now)
        if self._stopping_since is not None:
            self._check_stop(now)
        elif self._exit_code is None:
            self._maybe_start(now)
            self._maybe_upgrade(now)
            self._maybe_check_memory(now)
            self._maybe_self_upgrade()
        self._write_state(now)

    def _live(self) -> list[Child]:
        return [c for c in (self.current, self.candidate, *self.retiring)
                if c is not None and c.exit_code is None]

    def _to(self, state: ProcState, why: str, **fields: Any) -> None:
        if state != self.state:
            log.info("delegate.state", **{"from": self.state.value}, to=state.value, why=why, **fields)
            self.state = state

    # --- starting -------------------------------------------------------------------------------

    def _installed_artifact(self) -> str | None:
        current = self.store.installed()["current"]
        if current and current not in self.store.failed() and self.store.artifact(current).exists():
            return current
        return None

    def _spawn(self, artifact: str | None, role: Role, purpose: Purpose, now: float) -> Child | None:
        if artifact is None:
            argv = list(self.s.delegate_command)
        else:
            argv = [sys.executable, str(self.store.artifact(artifact))]
        env = dict(os.environ)
        env[ch.ENV_DIR] = str(self.channel.root)
        env[ch.ENV_HEARTBEAT] = f"{self.s.heartbeat_interval_s:g}"
        env[ch.ENV_GONE] = f"{self.s.heartbeat_timeout_s:g}"
        env[ch.ENV_PID] = str(os.getpid())
        if self._init_done:
            env["HARNESS_INIT_SCRIPT_DONE"] = "1"  # INIT_SCRIPT runs once per container
        try:
            pid = process.spawn(argv, env)
        except OSError as exc:
            log.error("delegate.spawn_failed", command=argv[0], error=str(exc),
                      hint="check WATCHER_DELEGATE_COMMAND and the image")
            return None
        self._init_done = True
        child = Child(pid=pid, artifact=artifact, role=role, state=ProcState.STARTING,
                      purpose=purpose, spawned_at=now, heartbeat_seen_at=now)
        child.watch = process.ExitWatch(pid, self._child_exited)
        log.info("delegate.spawned", pid=pid, role=role.value, purpose=purpose.value,
                 artifact=artifact or "image")
        return child

    def _child_exited(self, pid: int, code: int) -> None:
        self._exits.append((pid, code))
        self._wake.set()

    def _maybe_start(self, now: float) -> None:
        if self.current is not None or self.state in (ProcState.FATAL, ProcState.EXITED):
            return
        if now < self.backoff_until:
            return
        child = self._spawn(self.artifact, Role.CURRENT, Purpose.START, now)
        if child is None:
            self._backoff(now, "spawn failed")
            return
        self.current = child
        # STOPPED/BACKOFF -> STARTING: a process exists; RUNNING needs delegate-ready.
        self._to(ProcState.STARTING, "spawned", pid=child.pid)

    def _backoff(self, now: float, why: str) -> None:
        self.failures += 1
        if self.failures > self.s.start_retries:
            if self.artifact is not None:
                # An installed version keeps dying: go back to the previous one (or the image's).
                self._roll_back_installed(f"{self.failures - 1} failed starts in a row")
                self.failures = 1
            else:
                # BACKOFF -> FATAL: restarting has not helped; let ECS replace the container.
                self._to(ProcState.FATAL, f"{self.failures - 1} failed starts in a row; giving up",
                         hint="see the delegate's own log lines above for the cause")
                self._exit_code = EXIT_FAILED
                return
        delay = min(self.s.backoff_max_s, self.s.backoff_initial_s * 2 ** (self.failures - 1))
        delay *= random.uniform(0.9, 1.1)
        self.backoff_until = now + delay
        # any -> BACKOFF: wait before the next start, longer each failure in a row.
        self._to(ProcState.BACKOFF, why, retry_in_s=round(delay, 3), failures=self.failures)

    def _roll_back_installed(self, why: str) -> None:
        bad = self.artifact
        assert bad is not None
        self.store.mark_failed(bad)
        previous = self.store.installed()["previous"]
        if previous and (previous in self.store.failed() or not self.store.artifact(previous).exists()):
            previous = None
        if previous:
            self.store.set_current(previous, None)
        else:
            self._clear_installed()
        self.artifact = previous
        log.warning("upgrade.rolled_back", version=bad, to=previous or "image", why=why)

    def _clear_installed(self) -> None:
        (self.store.root / "installed.json").unlink(missing_ok=True)

    # --- messages and heartbeats ----------------------------------------------------------------

    def _read(self, child: Child, now: float) -> None:
        for name, args in self.channel.receive(child.pid):
            if name == ch.NEW_DELEGATE:
                child.version = str(args.get("version") or "") or None
                log.info("delegate.announced", pid=child.pid, version=child.version,
                         role=child.role.value)
            elif name == ch.DELEGATE_STARTED:
                child.started = True
                child.heartbeat_seen_at = now
                self.channel.send(child.pid, ch.GO_AHEAD)
            elif name == ch.DELEGATE_READY and not child.ready:
                child.ready = True
                self._on_ready(child, now)
            elif name in (ch.DELEGATE_STOPPING, ch.DELEGATE_DRAINED):
                log.info(f"delegate.{name.removeprefix('delegate-')}", pid=child.pid, **args)
        state = self.channel.state(child.pid)
        if state is not None and state.get("heartbeat") != child.heartbeat:
            child.heartbeat = state.get("heartbeat")
            child.heartbeat_seen_at = now
            child.started = True

    def _on_ready(self, child: Child, now: float) -> None:
        seconds = round(now - child.spawned_at, 3)
        log.info("delegate.ready", pid=child.pid, version=child.version, role=child.role.value,
                 seconds=seconds)
        if child.role == Role.CURRENT:
            child.state = ProcState.RUNNING
            self.failures = 0
            # STARTING -> RUNNING: registered and heartbeating.
            self._to(ProcState.RUNNING, "delegate-ready", pid=child.pid, version=child.version)
        elif child.role == Role.CANDIDATE:
            self._promote(child, now)

    def _promote(self, new: Child, now: float) -> None:
        """The candidate is ready: it becomes current; the old one stops acquiring and drains."""
        old = self.current
        self.candidate = None
        new.role, new.state = Role.CURRENT, ProcState.RUNNING
        self.current = new
        if new.purpose == Purpose.UPGRADE and new.artifact is not None:
            self.store.set_current(new.artifact, old.artifact if old else None)
            self.artifact = new.artifact
            self._pending = None
        if old is not None and old.exit_code is None:
            old.role, old.state = Role.RETIRING, ProcState.STOPPING
            old.stop_sent_at = now
            self.channel.send(old.pid, ch.STOP_ACQUIRING, exitWhenDrainedS=self.s.upgrade_drain_budget_s,
                              handover=True)
            self.retiring.append(old)
        log.info("upgrade.completed" if new.purpose == Purpose.UPGRADE else "delegate.replaced",
                 old_pid=old.pid if old else None, old_version=old.version if old else None,
                 pid=new.pid, version=new.version, seconds=round(now - new.spawned_at, 3))
        self._to(ProcState.RUNNING, "new process took over", pid=new.pid)

    # --- timeouts -------------------------------------------------------------------------------

    def _check_timeouts(self, now: float) -> None:
        for child in self._live():
            if not child.started and now - child.spawned_at > self.s.start_timeout_s:
                self._kill(child, "start_timeout",
                           f"no delegate-started within WATCHER_START_TIMEOUT_S={self.s.start_timeout_s:g}")
            elif child.started and now - child.heartbeat_seen_at > self.s.heartbeat_timeout_s:
                self._kill(child, "hung", f"no heartbeat for {now - child.heartbeat_seen_at:.1f}s "
                           f"(WATCHER_HEARTBEAT_TIMEOUT_S={self.s.heartbeat_timeout_s:g})")
            elif (child.role == Role.CANDIDATE and not child.ready
                  and now - child.spawned_at > self.s.ready_timeout_s):
                self._kill(child, "not_ready",
                           f"not registered within WATCHER_READY_TIMEOUT_S={self.s.ready_timeout_s:g}")
            elif child.role == Role.RETIRING and child.stop_sent_at is not None:
                waited = now - child.stop_sent_at
                if waited > self.s.upgrade_drain_budget_s + _TERM_GRACE_S and child.term_sent_at is None:
                    child.term_sent_at = now
                    process.kill(child.pid, signal.SIGTERM)
                elif child.term_sent_at is not None and now - child.term_sent_at > _TERM_GRACE_S:
                    self._kill(child, "drain_timeout", "did not exit after its drain budget")

    def _kill(self, child: Child, kind: str, why: str) -> None:
        if child.killed_for is None:
            child.killed_for = kind
            log.warning(f"delegate.{kind}", pid=child.pid, role=child.role.value, why=why)
        process.kill(child.pid, signal.SIGKILL)

    # --- exits ----------------------------------------------------------------------------------

    def _on_exit(self, pid: int, code: int, now: float) -> None:
        child = next((c for c in (self.current, self.candidate, *self.retiring)
                      if c is not None and c.pid == pid), None)
        if child is None:
            return
        child.exit_code = code
        self.channel.forget(pid)
        log.info("delegate.exited", pid=pid, exit_code=code, role=child.role.value,
                 version=child.version, killed_for=child.killed_for,
                 lived_s=round(now - child.spawned_at, 3))
        if child.role == Role.RETIRING:
            self.retiring.remove(child)
        elif child.role == Role.CANDIDATE:
            self.candidate = None
            self._candidate_failed(child, f"exited with {code} before it was ready")
        else:
            self.current = None
            self._current_exited(child, code, now)

    def _candidate_failed(self, child: Child, why: str) -> None:
        if child.purpose == Purpose.UPGRADE and child.artifact is not None:
            self.store.mark_failed(child.artifact)
            self._pending = None
            log.warning("upgrade.rolled_back", version=child.artifact, to=self._running_version(),
                        why=why, note="not tried again until another version is published")
        if self.current is not None and self.current.exit_code is None:
            self.channel.send(self.current.pid, ch.RESUME)

    def _current_exited(self, child: Child, code: int, now: float) -> None:
        if self._stopping_since is not None:
            # STOPPING -> EXITED: asked to stop, and it did.
            self._to(ProcState.EXITED, "stopped", exit_code=code)
            return
        if code == EXIT_CONFIG:
            if child.artifact is not None:
                self._roll_back_installed("the installed version exits with the configuration code")
                self._backoff(now, "installed version rejected the configuration")
                return
            # any -> FATAL: bad configuration; restarting will not help.
            self._to(ProcState.FATAL, "the delegate exited with code 3: its configuration is invalid",
                     hint="read the delegate's message above, fix the task definition's environment, "
                          "and start a new task")
            self._exit_code = EXIT_CONFIG
            return
        if code == EXIT_SELF_DESTRUCT:
            # any -> EXITED: the manager removed this delegate; do not restart it.
            self._to(ProcState.EXITED, "self-destruct: the manager removed this delegate")
            self._exit_code = EXIT_SELF_DESTRUCT
            return
        if code == EXIT_OK and child.killed_for is None:
            # any -> EXITED: it stopped on its own (someone asked it to); so does the container.
            self._to(ProcState.EXITED, "the delegate exited 0 by itself")
            self._exit_code = EXIT_OK
            return
        back = next((r for r in self.retiring if r.exit_code is None), None)
        if back is not None:
            # RUNNING (new) died while the old one drains: the old one resumes and is current again.
            self.retiring.remove(back)
            back.role, back.state, back.stop_sent_at, back.term_sent_at = \
                Role.CURRENT, ProcState.RUNNING, None, None
            self.current = back
            self.channel.send(back.pid, ch.RESUME)
            if child.artifact is not None and child.artifact != back.artifact:
                self.store.mark_failed(child.artifact)
                if back.artifact is None:
                    self._clear_installed()
                else:
                    self.store.set_current(back.artifact, None)
                self.artifact = back.artifact
                log.warning("upgrade.rolled_back", version=child.artifact, to=back.version,
                            why="the new version died while the old one was draining")
            self._to(ProcState.RUNNING, "the draining process resumed", pid=back.pid)
            return
        if child.ready:
            self.failures = 0  # it had been running: this is a crash, not a failed start
        why = "hung (killed)" if child.killed_for == "hung" else f"exited with {code}"
        self._backoff(now, why)

    # --- stop -----------------------------------------------------------------------------------

    def _handle_signals(self, now: float) -> None:
        while self._signals_handled < self._signals:
            self._signals_handled += 1
            if self._signals_handled == 1:
                self._stopping_since = now
                log.info("watcher.stop_requested", drain_budget_s=self.s.drain_budget_s)
                for child in self._live():
                    self.channel.send(child.pid, ch.STOP_ACQUIRING,
                                      exitWhenDrainedS=self.s.drain_budget_s, handover=False)
                    child.stop_sent_at = now
                if self.current is not None:
                    # RUNNING/STARTING -> STOPPING: drain within the budget, then exit 0.
                    self._to(ProcState.STOPPING, "SIGTERM")
                else:
                    self._to(ProcState.STOPPED, "SIGTERM before a delegate was running")
            elif self._signals_handled == 2:
                log.warning("watcher.stop_forced", note="second signal: not waiting for tasks")
                self._force_stop(now)

    def _force_stop(self, now: float) -> None:
        loop = asyncio.get_running_loop()
        for child in self._live():
            process.kill(child.pid, signal.SIGTERM)
            loop.call_later(0.2, process.kill, child.pid, signal.SIGTERM)  # the second one forces
            child.term_sent_at = now
        assert self._stopping_since is not None
        self._stopping_since = min(self._stopping_since, now - self.s.drain_budget_s - 1.0)

    def _check_stop(self, now: float) -> None:
        assert self._stopping_since is not None
        live = self._live()
        if not live:
            clean = self.current is None or self.current.exit_code in (None, 0)
            self._exit_code = EXIT_OK if clean else EXIT_FAILED
            return
        waited = now - self._stopping_since
        for child in live:
            if waited > self.s.drain_budget_s + 1.0 and child.term_sent_at is None:
                child.term_sent_at = now
                process.kill(child.pid, signal.SIGTERM)
            elif child.term_sent_at is not None and now - child.term_sent_at > _FORCE_KILL_AFTER_S:
                self._kill(child, "stop_timeout", "did not exit within the drain budget")

    def _maybe_check_memory(self, now: float) -> None:
        cur = self.current
        if (self.s.memory_limit_mib <= 0 or cur is None or cur.state != ProcState.RUNNING
                or self.candidate is not None or self.retiring
                or now - self._last_memory_check < _MEMORY_CHECK_EVERY_S):
            return
        self._last_memory_check = now
        rss = process.rss_mib(cur.pid)
        if rss is not None and rss > self.s.memory_limit_mib:
            log.warning("delegate.memory_exceeded", pid=cur.pid, rss_mib=round(rss, 1),
                        limit_mib=self.s.memory_limit_mib, action="graceful replacement")
            self.candidate = self._spawn(cur.artifact, Role.CANDIDATE, Purpose.REPLACE, now)

    # --- the watcher's own heartbeat ------------------------------------------------------------

    def _write_state(self, now: float, force: bool = False) -> None:
        if not force and now - self._last_state_write < self.s.heartbeat_interval_s:
            return
        self._last_state_write = now
        try:
            self.channel.write_watcher_state({
                "pid": os.getpid(), "version": watcher.__version__,
                "heartbeat": int(time.time() * 1000), "state": self.state.value,
                "shutdownPending": self._stopping_since is not None,
                "delegates": [c.summary() for c in self._live()],
            })
        except OSError as exc:
            log.warning("watcher.state_write_failed", error=str(exc))
