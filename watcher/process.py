"""Delegate processes as the watcher sees them: a pid, an exit status, a resident size; and the
watcher's own process settings.

Children are spawned with `posix_spawn` in a session of their own (a terminal's Ctrl-C reaches only
the watcher, which decides) and watched through a pidfd on the event loop, so an exit is seen at once.
After a watcher self-upgrade (`exec`), the same pids are still this process's children and are
adopted the same way.

The watcher is PID 1 of its container, and also makes itself a child subreaper (`harden`), so
processes orphaned below it (a task script whose delegate was SIGKILLed) become its children; on
SIGCHLD it reaps every such orphan (`reap_orphans`), so none stays a zombie. `harden` also makes the
watcher non-dumpable: a same-uid task script can then neither read `/proc/<watcher>/environ` (which
holds DELEGATE_TOKEN) nor its memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36


def harden() -> list[str]:
    """Non-dumpable, and a child subreaper; returns what could not be done (not Linux, seccomp)."""
    failed = []
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return ["prctl"]
    for option, value, name in ((_PR_SET_DUMPABLE, 0, "PR_SET_DUMPABLE"),
                                (_PR_SET_CHILD_SUBREAPER, 1, "PR_SET_CHILD_SUBREAPER")):
        if libc.prctl(option, value, 0, 0, 0) != 0:
            failed.append(f"{name}: {os.strerror(ctypes.get_errno())}")
    return failed


def spawn(argv: Sequence[str], env: Mapping[str, str], pass_fd: int | None = None) -> int:
    """Start `argv` in its own session; `pass_fd` (a sealed artifact) is inherited, nothing else."""
    program = argv[0]
    if os.sep not in program:
        found = shutil.which(program, path=env.get("PATH"))
        if found is None:
            raise FileNotFoundError(f"delegate command {program!r} not found on PATH")
        program = found
    if pass_fd is not None:
        os.set_inheritable(pass_fd, True)
    try:
        return os.posix_spawn(program, list(argv), dict(env), setsid=True)
    finally:
        if pass_fd is not None:
            os.set_inheritable(pass_fd, False)


def reap_orphans(ours: set[int]) -> list[tuple[int, int]]:
    """Reap every ended child that is not one of `ours` (those have their own ExitWatch): orphans
    re-parented to this process. Returns (pid, exit code) of each."""
    me = str(os.getpid())
    reaped = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in ours:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[0] == b"Z" and fields[1].decode() == me:
            with contextlib.suppress(ChildProcessError):
                pid, status = os.waitpid(int(name), os.WNOHANG)
                if pid:
                    reaped.append((pid, os.waitstatus_to_exitcode(status)))
    return reaped


def is_our_child(pid: int) -> bool | int:
    """True if `pid` is a live child of ours; its exit code if it has just ended; False if not ours."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    if done == 0:
        return True
    return os.waitstatus_to_exitcode(status)


def reap(pid: int) -> int:
    """Collect the exit status of a child known to have ended: the exit code, or -signal."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return -1
    return os.waitstatus_to_exitcode(status)


class ExitWatch:
    """Calls `on_exit(pid, code)` on the loop once the child ends."""

    def __init__(self, pid: int, on_exit: Callable[[int, int], None]) -> None:
        self.pid = pid
        self._on_exit = on_exit
        self._fd: int | None = None
        self._done = False
        loop = asyncio.get_running_loop()
        try:
            self._fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self._fd = None  # old kernel: `poll()` from the watcher's tick instead
        if self._fd is not None:
            loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        self._finish(reap(self.pid))

    def poll(self) -> None:
        if self._fd is None and not self._done:
            result = is_our_child(self.pid)
            if result is not True:
                self._finish(-1 if result is False else int(result))

    def _finish(self, code: int) -> None:
        if self._done:
            return
        self._done = True
        self.close()
        self._on_exit(self.pid, code)

    def close(self) -> None:
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def rss_mib(pid: int) -> float | None:
    """Resident memory of `pid` in MiB (Linux /proc), or None if unknown."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return None
