"""The supervisor: start the delegate, keep it alive, replace it, upgrade it, stop it.

One loop (`run`) wakes on a tick, a child's exit, a signal or a finished download, and calls `_step`.
The slot's state changes only through the state machine (`watcher/machine.py`); this module reports
events to it. The slot (`self.d.current`) is one process; an upgrade or a replacement starts a
`candidate` beside it; once that is ready, the old one is `retiring` (drains and exits). Upgrades
are the `Upgrader`'s; SIGTERM and timeouts are in `stopping.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

import watcher
from watcher import channel as ch
from watcher import process, selfupgrade
from watcher.backoff import RetryPolicy
from watcher.child import Child, Purpose, Role
from watcher.delegates import Delegates
from watcher.log import log
from watcher.machine import Event, Machine, State
from watcher.settings import EXIT_CONFIG, Settings
from watcher.stopping import Shutdown, check_timeouts
from watcher.upgrade import Refused
from watcher.upgrading import Upgrader

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_SELF_DESTRUCT = 4
EXIT_TOKEN_REVOKED = 5  # the manager refused the delegate token as revoked or expired
ENDING = {EXIT_SELF_DESTRUCT: (Event.SELF_DESTRUCT, "self-destruct: the manager removed this delegate"),
          EXIT_TOKEN_REVOKED: (Event.TOKEN_REVOKED, "the manager refused the delegate token as revoked "
                               "or expired: install a new DELEGATE_TOKEN and start a new task")}


class Watcher:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.channel = ch.Channel(settings.channel_dir)
        self.machine = Machine()
        self.policy = RetryPolicy(settings.backoff_initial_s, settings.backoff_max_s, settings.start_retries)
        self._wake = asyncio.Event()
        self.upgrader = Upgrader(settings, self._wake.set)
        self.shutdown = Shutdown(settings, self.channel)
        self.d = Delegates(settings, self.channel, self._wake)
        self.failures = 0  # failed starts (or deaths) in a row
        self.backoff_until = 0.0
        self._exit_code: int | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # --- the loop -------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        loop.add_signal_handler(signal.SIGCHLD, self._wake.set)  # an orphan to reap
        log.info("watcher.starting", work_dir=str(self.s.work_dir),
                 artifact=self.upgrader.artifact or "image", trusted_keys=len(self.s.trusted_keys))
        self._adopt()
        for coro, name in self.upgrader.loops():
            self._tasks.append(asyncio.create_task(coro, name=name))
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
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                loop.remove_signal_handler(sig)
            self._write_state(force=True)
        log.info("watcher.stopped", exit_code=self._exit_code)
        return self._exit_code or 0

    def _write_state(self, force: bool = False) -> None:
        self.d.write_state({"state": self.machine.state.value, "shutdownPending": self.shutdown.requested,
                            "upgradeChecks": self.upgrader.checks}, force)

    def _on_signal(self) -> None:
        self.shutdown.signalled()
        self._wake.set()

    def _step(self, now: float) -> None:
        if self.shutdown.take(now, self.d.live()):
            self.machine.fire(Event.STOP, "SIGTERM")
        for child in self.d.live():
            if child.watch is not None:
                child.watch.poll()
        for pid, code in process.reap_orphans({c.pid for c in self.d.live()}):
            log.debug("watcher.orphan_reaped", orphan_pid=pid, exit_code=code)
        exits, self.d.exits = self.d.exits, []
        for pid, code in exits:
            self._on_exit(pid, code, now)
        for child in self.d.live():
            if self.d.read(child, now):
                self._on_ready(child, now)
        check_timeouts(self.d.live(), now, self.s, self.d.kill)
        if self.shutdown.requested:
            if not self.d.live():
                clean = self.d.current is None or self.d.current.exit_code in (None, 0)
                self._exit_code = EXIT_OK if clean else EXIT_FAILED
            else:
                self.shutdown.police(now, self.d.live(), self.d.kill)
        elif self._exit_code is None:
            self._maybe_start(now)
            self.upgrader.observe(self.d.current.version if self.d.current else None,
                                  busy=self.d.candidate is not None or bool(self.d.retiring))
            self._maybe_replace(now)
            self._maybe_self_upgrade()
        self._write_state()

    # --- starting -------------------------------------------------------------------------------

    def _spawn(self, artifact: str | None, role: Role, purpose: Purpose, now: float) -> Child | None:
        """An installed version starts only from a freshly verified sealed copy (Refused if not)."""
        verified = self.upgrader.launch(artifact) if artifact is not None else None
        try:
            return self.d.spawn(artifact, verified, role, purpose, now)
        finally:
            if verified is not None:
                verified.close()

    def _maybe_start(self, now: float) -> None:
        if self.d.current or self.d.candidate or self.machine.terminal or now < self.backoff_until:
            return  # (a candidate that the current one handed over to becomes current when ready)
        try:
            child = self._spawn(self.upgrader.artifact, Role.CURRENT, Purpose.START, now)
        except Refused as exc:
            log.error("upgrade.installed_refused", version=self.upgrader.artifact, error=str(exc),
                      note="not started; going back to the previous version")
            self.upgrader.roll_back("the installed artifact failed verification")
            self._failed(now, "the installed version failed verification")
            return
        if child is None:
            return self._failed(now, "spawn failed")
        self.d.current = child
        self.machine.fire(Event.SPAWNED, "spawned", delegate_pid=child.pid)

    def _failed(self, now: float, why: str) -> None:
        """A failed start or a death: back off (the one retry policy), roll back, or give up."""
        self.failures += 1
        if self.policy.exhausted(self.failures):
            if self.upgrader.artifact is not None:
                # An installed version keeps dying: go back to the previous one (or the image's).
                self.upgrader.roll_back(f"{self.failures - 1} failed starts in a row")
                self.failures = 1
            else:
                self.machine.fire(Event.GAVE_UP, f"{self.failures - 1} failed starts in a row; giving up",
                                  hint="see the delegate's own log lines above for the cause")
                self._exit_code = EXIT_FAILED
                return
        delay = self.policy.delay(self.failures)
        self.backoff_until = now + delay
        self.machine.fire(Event.FAILED, why, retry_in_s=round(delay, 3), failures=self.failures)

    def _on_ready(self, child: Child, now: float) -> None:
        log.info("delegate.ready", delegate_pid=child.pid, version=child.version, role=child.role.value,
                 seconds=round(now - child.spawned_at, 3))
        if child.killed_for is not None or self.machine.terminal:  # stale: being killed, or ended
            log.info("delegate.ready_ignored", delegate_pid=child.pid, killed_for=child.killed_for)
        elif child.role == Role.CURRENT and self.machine.state == State.STARTING:
            self.failures = 0
            self.machine.fire(Event.READY, "delegate-ready", delegate_pid=child.pid, version=child.version)
        elif child.role == Role.CANDIDATE and not self.shutdown.requested:  # stopping: no hand-over
            self._promote(child, now)

    def _promote(self, new: Child, now: float) -> None:
        """The candidate is ready: it becomes current; the old one stops acquiring and drains."""
        old = self.d.current or new.replaces
        self.d.candidate = None
        new.role = Role.CURRENT
        self.d.current = new
        if new.purpose == Purpose.UPGRADE:
            self.upgrader.promoted(new.artifact, old.artifact if old else None)
        if old is not None and old.exit_code is None:
            old.role = Role.RETIRING
            old.stop_sent_at = now
            self.channel.send(old.pid, ch.STOP_ACQUIRING, exitWhenDrainedS=self.s.upgrade_drain_budget_s,
                              handover=True)
            self.d.retiring.append(old)
        log.info("upgrade.completed" if new.purpose == Purpose.UPGRADE else "delegate.replaced",
                 old_pid=old.pid if old else None, old_version=old.version if old else None,
                 delegate_pid=new.pid, version=new.version, seconds=round(now - new.spawned_at, 3))
        self.machine.fire(Event.TOOK_OVER, "new process took over", delegate_pid=new.pid)

    # --- exits ----------------------------------------------------------------------------------

    def _on_exit(self, pid: int, code: int, now: float) -> None:
        child = self.d.find(pid)
        if child is None:
            return
        child.exit_code = code
        self.channel.forget(pid)
        log.info("delegate.exited", delegate_pid=pid, exit_code=code, role=child.role.value,
                 version=child.version, killed_for=child.killed_for,
                 lived_s=round(now - child.spawned_at, 3))
        if child.role == Role.RETIRING:
            self.d.retiring.remove(child)
        elif child.role == Role.CANDIDATE:
            self.d.candidate = None
            if child.purpose == Purpose.UPGRADE and not self.shutdown.requested:
                self.upgrader.candidate_failed(child.artifact, f"exited with {code} before it was ready")
            if self.d.current is not None and self.d.current.exit_code is None:
                self.channel.send(self.d.current.pid, ch.RESUME)
            elif self.d.current is None and not self.shutdown.requested:  # after a hand-over
                self._failed(now, f"the candidate exited with {code} after the hand-over")
        else:
            self.d.current = None
            self._current_exited(child, code, now)

    def _current_exited(self, child: Child, code: int, now: float) -> None:
        if self.shutdown.requested:
            self.machine.fire(Event.STOPPED, "stopped", exit_code=code)
        elif code == EXIT_CONFIG and child.artifact is not None:
            self.upgrader.roll_back("the installed version exits with the configuration code")
            self._failed(now, "installed version rejected the configuration")
        elif code == EXIT_CONFIG:
            self.machine.fire(Event.BAD_CONFIG, "the delegate exited with code 3: its configuration is "
                              "invalid", hint="read the delegate's message above, fix the task "
                              "definition's environment, and start a new task")
            self._exit_code = EXIT_CONFIG
        elif code in ENDING:  # exit 4 or 5: the manager will not take this delegate back
            self.machine.fire(*ENDING[code])
            self._exit_code = code
        elif code == EXIT_OK and (new := self.d.candidate) is not None and new.exit_code is None:
            new.replaces = child  # it exited because the candidate registered as this delegate
            self.machine.fire(Event.HANDED_OVER, "registration given to the candidate", delegate_pid=new.pid)
        elif code == EXIT_OK and child.killed_for is None:
            self.machine.fire(Event.EXITED_BY_ITSELF, "the delegate exited 0 by itself")
            self._exit_code = EXIT_OK
        elif (back := next((r for r in self.d.retiring if r.exit_code is None), None)) is not None:
            self.d.retiring.remove(back)
            back.role, back.stop_sent_at, back.term_sent_at = Role.CURRENT, None, None
            self.d.current = back
            self.channel.send(back.pid, ch.RESUME)
            self.upgrader.resumed(child.artifact, back.artifact, back.version)
            self.machine.fire(Event.RESUMED, "the draining process resumed", delegate_pid=back.pid)
        else:
            if child.ready:
                self.failures = 0  # it had been running: this is a crash, not a failed start
            self._failed(now, "hung (killed)" if child.killed_for == "hung" else f"exited with {code}")

    # --- upgrades, memory, self-upgrade -----------------------------------------------------------

    def _running(self) -> Child | None:
        cur = self.d.current
        return cur if cur is not None and cur.ready and self.machine.state == State.RUNNING else None

    def _maybe_replace(self, now: float) -> None:
        """A verified upgrade waits, or the process is past the memory limit: start a candidate beside it."""
        cur = self._running()
        if cur is None or self.d.candidate is not None or self.d.retiring:
            return
        artifact: str | None
        if (version := self.upgrader.pending) is not None:
            self.channel.send(cur.pid, ch.UPGRADING, version=version)
            log.info("upgrade.starting", version=version, old_version=cur.version)
            purpose, artifact = Purpose.UPGRADE, version
        elif self.d.over_memory(cur, now):
            purpose, artifact = Purpose.REPLACE, cur.artifact
        else:
            return
        try:
            self.d.candidate = self._spawn(artifact, Role.CANDIDATE, purpose, now)
        except Refused as exc:
            log.error("upgrade.installed_refused", version=artifact, error=str(exc), note="not started")
        if self.d.candidate is None and purpose == Purpose.UPGRADE:
            self.upgrader.candidate_failed(version, "could not be started")

    def _maybe_self_upgrade(self) -> None:
        version = self.upgrader.self_pending
        if version is None or self.d.candidate is not None or self.d.retiring:
            return
        self.upgrader.self_pending = None
        extra = {"state": self.machine.state.value, "failures": self.failures, "init_done": self.d.init_done}
        selfupgrade.replace_self(self.upgrader.self_store, version, self.channel, self.d.live(),
                                 extra, self.d.exited)

    def _adopt(self) -> None:
        """After a self-upgrade: take back the processes the previous watcher image started."""
        adopted = selfupgrade.adopt(self.channel, time.monotonic(), self.d.exited, self.d.exits)
        if adopted is None:
            return
        children, handoff = adopted
        self.d.init_done = bool(handoff.get("init_done", True))
        self.d.place(children)
        if self.d.current is not None:
            event = Event.ADOPTED_RUNNING if self.d.current.ready else Event.ADOPTED_STARTING
            self.machine.fire(event, "adopted after self-upgrade", delegate_pid=self.d.current.pid)
        log.info("upgrade.watcher_completed", version=watcher.__version__,
                 from_version=handoff.get("from_version"))
