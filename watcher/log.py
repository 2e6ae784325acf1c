"""A small structured logger: one JSON line per event (or key=value on a terminal).

The watcher stays light (it runs beside the delegate for the container's whole life), so it does not
load structlog; the events still follow the house rule: constant dotted names plus key-value fields.
Every line carries `logger`, `pid`, `version` and `instance` (random per watcher process image, new
after a self-upgrade), because the watcher and two delegates share one stdout during an upgrade.
`exc_info=True` adds the current exception's type, message and traceback (`exception`).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any, TextIO

import watcher

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class Logger:
    def __init__(self) -> None:
        self.stream: TextIO = sys.stdout
        self.json = True
        self.level = 20
        self.bound: dict[str, Any] = {"pid": os.getpid(), "version": watcher.__version__,
                                      "instance": os.urandom(6).hex()}

    def configure(self, level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None,
                  **bind: Any) -> None:
        self.stream = stream or sys.stdout
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.json = fmt == "json" or (fmt == "auto" and not isatty)
        self.level = _LEVELS.get(level.lower(), 20)
        self.bound.update(bind)

    def log(self, level: str, event: str, *, exc_info: bool = False, **fields: Any) -> None:
        if _LEVELS[level] < self.level:
            return
        if exc_info and sys.exc_info()[1] is not None:
            fields["exception"] = traceback.format_exc().rstrip()
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
        if self.json:
            record = {"timestamp": stamp, "level": level, "logger": "watcher", **self.bound,
                      "event": event, **fields}
            line = json.dumps(record, default=str, separators=(",", ":"))
        else:
            pairs = " ".join(f"{k}={v!r}" for k, v in fields.items())
            line = f"{stamp} [{level:<7}] watcher[{self.bound['pid']}] {event} {pairs}".rstrip()
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed stdout must not take the watcher down

    def debug(self, event: str, **fields: Any) -> None:
        self.log("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self.log("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.log("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.log("error", event, **fields)


log = Logger()
