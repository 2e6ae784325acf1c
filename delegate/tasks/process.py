"""Running a bash script as a child process with streamed output, a timeout and clean killing.

Used by SHELL_SCRIPT tasks, profiles and INIT_SCRIPT. The child runs in its own process group so
that a timeout or an abort stops everything it started (SIGTERM, then SIGKILL after a grace). Its
environment never holds the delegate's secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

#: never handed to scripts: the delegate's own credentials
SECRET_ENV = ("DELEGATE_TOKEN", "ACCOUNT_SECRET", "PROXY_PASSWORD", "DEVSTACK_API_KEY")
KILL_GRACE_S = 5.0


@dataclass
class ScriptResult:
    exit_code: int | None  # None when killed by timeout
    timed_out: bool


def script_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env.update(extra or {})
    return env


async def run_script(
    script: str,
    *,
    timeout_s: float,
    on_stdout: Callable[[str], None],
    on_stderr: Callable[[str], None],
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ScriptResult:
    """Run `script` with bash; cancel-safe (cancelling kills the process group)."""
    proc = await asyncio.create_subprocess_exec(
        "/bin/bash", "-c", script,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(cwd) if cwd else None,
        env=script_env(env),
        start_new_session=True,
    )

    async def pump(stream: asyncio.StreamReader | None, sink: Callable[[str], None]) -> None:
        if stream is None:
            return
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the reader's limit: take what is there
                line = await stream.read(65_536)
            if not line:
                return
            sink(line.decode("utf-8", errors="replace").rstrip("\n"))

    pumps = asyncio.gather(pump(proc.stdout, on_stdout), pump(proc.stderr, on_stderr))
    try:
        async with asyncio.timeout(timeout_s):
            await proc.wait()
            await pumps
    except TimeoutError:
        await _kill_group(proc)
        await asyncio.gather(pumps, return_exceptions=True)
        return ScriptResult(exit_code=None, timed_out=True)
    except asyncio.CancelledError:
        await asyncio.shield(_kill_group(proc))
        pumps.cancel()
        raise
    return ScriptResult(exit_code=proc.returncode, timed_out=False)


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers of a finished script
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), KILL_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
