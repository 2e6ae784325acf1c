"""Watcher self-upgrade: replace this process's image with a verified new watcher, keeping the pid.

The watcher is PID 1 of the container, so it cannot start a second watcher and exit (the container
would end). Instead it `exec`s the new artifact in place: the pid, the open stdout, and the children
stay. Before that it writes a handoff file (the delegates it supervises, their roles and channel
offsets) that the new image reads at start to adopt them; the delegates never notice. A new artifact
must first answer `--version` with the published version, so a broken one is refused before `exec`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from watcher.channel import Channel, write_json_atomic
from watcher.log import log

_HANDOFF = "watcher-handoff.json"
SANITY_TIMEOUT_S = 30.0


async def sanity_check(path: Path, version: str) -> bool:
    def run() -> tuple[int, str]:
        done = subprocess.run([sys.executable, str(path), "--version"], capture_output=True,
                              text=True, timeout=SANITY_TIMEOUT_S, check=False)
        return done.returncode, (done.stdout or "").strip()

    try:
        code, out = await asyncio.to_thread(run)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.error("upgrade.watcher_refused", version=version, why=f"cannot run it: {exc}")
        return False
    if code != 0 or out != version:
        log.error("upgrade.watcher_refused", version=version,
                  why=f"`--version` exited {code} and printed {out[:80]!r}, expected {version!r}")
        return False
    return True


def exec_new(channel: Channel, path: Path, handoff: dict[str, Any], version: str) -> None:
    """Write the handoff and become the new watcher. Returns only if `exec` failed (OSError)."""
    write_json_atomic(channel.data / _HANDOFF, handoff)
    log.info("upgrade.watcher_exec", version=version, adopting=[c["pid"] for c in handoff["children"]])
    sys.stdout.flush()
    try:
        os.execv(sys.executable, [sys.executable, str(path)])  # noqa: S606 - our own verified artifact
    except OSError:
        (channel.data / _HANDOFF).unlink(missing_ok=True)
        raise


def read_handoff(channel: Channel) -> dict[str, Any] | None:
    path = channel.data / _HANDOFF
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    finally:
        path.unlink(missing_ok=True)
    return value if isinstance(value, dict) else None
