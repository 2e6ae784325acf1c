"""Rate-limited warnings: one line per kind per interval, with how many were not logged.

A hostile or broken manager can send a bad answer as often as it likes; logging each one would let
it fill the disk and drown the log. The first of a kind is logged at once, the rest of the interval
only counted, and the next line of that kind says how many there were (`repeats`).
"""

from __future__ import annotations

import time
from typing import Any

#: kinds are names chosen by our code, not by the peer; the cap is a guard all the same
_MAX_KINDS = 256


class RateLimitedLog:
    def __init__(self, logger: Any, interval_s: float = 10.0) -> None:
        self._log = logger
        self._interval = interval_s
        self._windows: dict[str, tuple[float, int]] = {}  # kind -> (window start, skipped)

    def warning(self, event: str, kind: str, **fields: Any) -> bool:
        """Log `event` unless `kind` was logged within the interval; True if it was logged."""
        now = time.monotonic()
        start, skipped = self._windows.get(kind, (-self._interval, 0))
        if now - start < self._interval:
            self._windows[kind] = (start, skipped + 1)
            return False
        if kind not in self._windows and len(self._windows) >= _MAX_KINDS:
            self._windows.clear()
        self._windows[kind] = (now, 0)
        self._log.warning(event, kind=kind, repeats=skipped, **fields)
        return True
