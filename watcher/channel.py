"""The watcher's side of the file channel with its delegates (format: docs/watcher.md).

Layout under `<work dir>/msg/`:

- `io/delegate/<pid>`: messages from the watcher to delegate `<pid>`, appended one per line;
- `io/watcher/<pid>`:  messages from delegate `<pid>` to the watcher, appended one per line;
- `data/delegate.<pid>.json`: that delegate's state (version, heartbeat, ...), replaced atomically;
- `data/watcher.json`: the watcher's own state and heartbeat.

A line is `<name>` or `<name> <JSON object>`. Each side keeps its read offset and only consumes whole
lines, so a reader never sees half a message. The delegate has its own copy of this contract
(`delegate/channel.py`): the two packages never import each other.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

_NAME = re.compile(r"^[a-z][a-z-]{0,40}$")

# delegate -> watcher
NEW_DELEGATE = "new-delegate"
DELEGATE_STARTED = "delegate-started"
DELEGATE_READY = "delegate-ready"
DELEGATE_STOPPING = "delegate-stopping"
DELEGATE_DRAINED = "delegate-drained"
# watcher -> delegate
GO_AHEAD = "go-ahead"
STOP_ACQUIRING = "stop-acquiring"
RESUME = "resume"
UPGRADING = "upgrading"

#: environment variables the watcher sets on the delegates it starts
ENV_DIR = "HARNESS_WATCHER_CHANNEL_DIR"
ENV_HEARTBEAT = "HARNESS_WATCHER_HEARTBEAT_INTERVAL_S"
ENV_GONE = "HARNESS_WATCHER_GONE_AFTER_S"
ENV_PID = "HARNESS_WATCHER_PID"
ENV_VERSION = "HARNESS_WATCHER_VERSION"  # the delegate reports it to the manager


def encode(name: str, args: dict[str, Any] | None = None) -> bytes:
    if not _NAME.match(name):
        raise ValueError(f"bad message name {name!r}")
    line = name if not args else f"{name} {json.dumps(args, separators=(',', ':'))}"
    return (line + "\n").encode()


def decode(line: str) -> tuple[str, dict[str, Any]] | None:
    name, _, rest = line.strip().partition(" ")
    if not _NAME.match(name):
        return None
    args: dict[str, Any] = {}
    if rest:
        try:
            value = json.loads(rest)
        except ValueError:
            return None
        if isinstance(value, dict):
            args = value
    return name, args


def write_json_atomic(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, path)


class Channel:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.to_delegates = root / "io" / "delegate"
        self.from_delegates = root / "io" / "watcher"
        self.data = root / "data"
        for d in (self.to_delegates, self.from_delegates, self.data):
            d.mkdir(parents=True, exist_ok=True)
        self._offsets: dict[int, int] = {}

    def send(self, pid: int, name: str, **args: Any) -> None:
        """Append one message for delegate `pid` (a single write: lines never interleave)."""
        fd = os.open(self.to_delegates / str(pid), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, encode(name, args))
        finally:
            os.close(fd)

    def receive(self, pid: int) -> list[tuple[str, dict[str, Any]]]:
        """New whole-line messages from delegate `pid` since the last call."""
        path = self.from_delegates / str(pid)
        offset = self._offsets.get(pid, 0)
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self._offsets[pid] = offset + end + 1
        messages = []
        for raw in chunk[: end + 1].decode("utf-8", "replace").splitlines():
            decoded = decode(raw)
            if decoded is not None:
                messages.append(decoded)
        return messages

    def offset(self, pid: int) -> int:
        return self._offsets.get(pid, 0)

    def set_offset(self, pid: int, offset: int) -> None:
        self._offsets[pid] = offset

    def state(self, pid: int) -> dict[str, Any] | None:
        try:
            value = json.loads((self.data / f"delegate.{pid}.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def write_watcher_state(self, value: dict[str, Any]) -> None:
        write_json_atomic(self.data / "watcher.json", value)

    def forget(self, pid: int) -> None:
        """Remove a dead delegate's files (pids are reused; a stale file must not mislead)."""
        self._offsets.pop(pid, None)
        for path in (self.to_delegates / str(pid), self.from_delegates / str(pid),
                     self.data / f"delegate.{pid}.json"):
            path.unlink(missing_ok=True)
