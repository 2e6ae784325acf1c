"""Running a bash script as a child process with streamed output, a timeout and clean killing.

Used by SHELL_SCRIPT tasks, profiles and INIT_SCRIPT. The child runs in its own process group so
that a timeout or an abort stops everything it started (SIGTERM, then SIGKILL after a grace).

Its environment is allow-listed, not filtered: a script sees what a shell needs (`SCRIPT_ENV_ALLOWED`,
matched case-insensitively, plus the ECS task-role and metadata endpoints so that the AWS CLI works
as the task's role) and what the task itself sets, never the delegate's token, AWS keys, session
tokens or a proxy URL that carries credentials. A script or an environment with a NUL byte cannot be
run and is a `TaskError`: it fails that task (or profile), not the delegate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from delegate.errors import TaskError

#: the delegate's variables a script may see (upper-cased names); everything else stays behind
SCRIPT_ENV_ALLOWED = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR",
    "HOSTNAME", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "ECS_CONTAINER_METADATA_URI", "ECS_CONTAINER_METADATA_URI_V4", "NO_PROXY",
    "DELEGATE_WORK_DIR", "DELEGATE_NAME", "DELEGATE_GROUP_NAME", "DELEGATE_TYPE",
})
#: passed only without credentials in them
_PROXY_ENV = frozenset({"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"})
KILL_GRACE_S = 5.0


@dataclass
class ScriptResult:
    exit_code: int | None  # None when killed by timeout
    timed_out: bool


def script_env(extra: Mapping[str, str] | None = None,
               base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a script: the allowed part of `base` (default: ours), then `extra`."""
    env: dict[str, str] = {}
    for key, value in (os.environ if base is None else base).items():
        if _allowed(key.upper(), value):
            env[key] = value
    env.update(extra or {})
    return env


def _allowed(name: str, value: str) -> bool:
    if name in SCRIPT_ENV_ALLOWED or name.startswith("LC_"):
        return True
    return name in _PROXY_ENV and not _has_credentials(value)


def _has_credentials(url: str) -> bool:
    try:
        parts = urlsplit(url if "://" in url else f"http://{url}")
    except ValueError:
        return True  # unparsable: do not risk it
    return parts.username is not None or parts.password is not None


def check_runnable(script: str, env: Mapping[str, str]) -> None:
    """TaskError naming the problem if `script` or `env` cannot be handed to exec."""
    if "\0" in script:
        at = script.index("\0")
        raise TaskError(f"the script contains a NUL byte (at character {at}); "
                        "a script is text: remove the byte and send it again")
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise TaskError(f"environment variable {key[:60]!r} has an invalid name or a NUL "
                            "byte in its value")


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
    full_env = script_env(env)
    check_runnable(script, full_env)
    try:
        proc = await asyncio.create_subprocess_exec(
            "/bin/bash", "-c", script,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(cwd) if cwd else None,
            env=full_env,
            start_new_session=True,
        )
    except (OSError, ValueError) as exc:
        raise TaskError(f"the script could not be started: {exc}") from None

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
