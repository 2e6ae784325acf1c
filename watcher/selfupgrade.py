"""Watcher self-upgrade: replace this process's image with a verified new watcher, keeping the pid.

The watcher is PID 1 of the container, so it cannot start a second watcher and exit (the container
would end). Instead it `exec`s the new artifact in place, from the sealed copy that was just verified
(`/proc/self/fd/N`): the pid, the open stdout, and the children stay. Before that it writes a handoff
file (the delegates it supervises, their roles and channel offsets) that the new image reads at start
to adopt them; the delegates never notice. A new artifact must first answer `--version` with the
published version, so a broken one is refused before `exec`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import watcher
from watcher import process, trust
from watcher.channel import Channel, write_json_atomic
from watcher.child import Child, Purpose, Role
from watcher.log import log
from watcher.upgrade import Refused, Store, Verified

_HANDOFF = "watcher-handoff.json"
SANITY_TIMEOUT_S = 15.0
_FD_PATH = re.compile(r"^/proc/self/fd/(\d+)$")


def sanity_check(artifact: Verified) -> str | None:
    """None if the artifact answers `--version` with its version; otherwise why not."""
    try:
        done = subprocess.run([sys.executable, "-P", artifact.path, "--version"], capture_output=True,
                              text=True, timeout=SANITY_TIMEOUT_S, check=False, pass_fds=(artifact.fd,),
                              env=trust.helper_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run it: {exc}"
    out = (done.stdout or "").strip()
    if done.returncode != 0 or out != artifact.version:
        return f"`--version` exited {done.returncode} and printed {out[:80]!r}, expected {artifact.version!r}"
    return None


def exec_new(channel: Channel, artifact: Verified, handoff: dict[str, Any]) -> None:
    """Write the handoff and become the new watcher. Returns only if `exec` failed (OSError)."""
    write_json_atomic(channel.data / _HANDOFF, handoff)
    log.info("upgrade.watcher_exec", version=artifact.version,
             adopting=[c["pid"] for c in handoff["children"]])
    sys.stdout.flush()
    os.set_inheritable(artifact.fd, True)
    try:
        os.execv(sys.executable, [sys.executable, "-P", artifact.path])  # noqa: S606 - verified above
    except OSError:
        os.set_inheritable(artifact.fd, False)
        (channel.data / _HANDOFF).unlink(missing_ok=True)
        raise


def keep_own_artifact_private() -> None:
    """Run from a sealed copy (after a self-upgrade): keep that fd open (imports read it) but do not
    pass it on to the delegates."""
    match = _FD_PATH.match(sys.argv[0] if sys.argv else "")
    if match:
        os.set_inheritable(int(match.group(1)), False)


def replace_self(store: Store, version: str, channel: Channel, children: list[Child],
                 extra: dict[str, Any], on_exit: Callable[[int, int], None]) -> None:
    """Verify the installed watcher `version` again, check it answers `--version`, hand the
    children over and exec it. Returns (logged, version marked failed) if any step fails."""
    try:
        artifact = store.load(version)
    except Refused as exc:
        log.error("upgrade.installed_refused", version=version, error=str(exc))
        store.mark_failed(version)
        return
    try:
        if (why := sanity_check(artifact)) is not None:
            log.error("upgrade.watcher_refused", version=version, error=why)
            store.mark_failed(version)
            return
        handoff = {"children": [c.handoff(channel.offset(c.pid)) for c in children], **extra,
                   "from_version": watcher.__version__}
        for child in children:
            if child.watch is not None:
                child.watch.close()
        store.set_current(version, None)
        try:
            exec_new(channel, artifact, handoff)
        except OSError as exc:
            log.error("upgrade.watcher_exec_failed", version=version, error=str(exc))
            store.mark_failed(version)
            for child in children:
                child.watch = process.ExitWatch(child.pid, on_exit)
    finally:
        artifact.close()


def read_handoff(channel: Channel) -> dict[str, Any] | None:
    path = channel.data / _HANDOFF
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    finally:
        path.unlink(missing_ok=True)
    return value if isinstance(value, dict) else None


def adopt(channel: Channel, now: float, on_exit: Callable[[int, int], None],
          exits: list[tuple[int, int]]) -> tuple[list[Child], dict[str, Any]] | None:
    """The processes a previous watcher image handed over (None: this is not a self-upgrade). Each
    is watched again; one that ended meanwhile is reported in `exits`."""
    handoff = read_handoff(channel)
    if handoff is None:
        return None
    children = []
    for item in handoff.get("children", []):
        pid = int(item["pid"])
        alive = process.is_our_child(pid)
        if alive is False:
            log.warning("watcher.adopt_skipped", delegate_pid=pid, why="not a child of this process")
            continue
        child = Child(pid=pid, artifact=item.get("artifact"), role=Role(item["role"]),
                      purpose=Purpose(item.get("purpose", "start")), spawned_at=now,
                      version=item.get("version"), started=bool(item.get("started")),
                      ready=bool(item.get("ready")), heartbeat_seen_at=now)
        channel.set_offset(pid, int(item.get("offset", 0)))
        if alive is True:
            child.watch = process.ExitWatch(pid, on_exit)
        else:
            exits.append((pid, int(alive)))
        log.info("watcher.adopted", delegate_pid=pid, role=child.role.value, version=child.version)
        children.append(child)
    return children, handoff
