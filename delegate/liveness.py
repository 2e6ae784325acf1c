"""The health verdict: registered, and a heartbeat acknowledged recently.

Every part that talks to the manager reports here (`acked()` / `failed(error)`); `/health`, the
watcher channel and the `delegate_connected` gauge read the one verdict.
"""

from __future__ import annotations

import time

from delegate.identity import Registration
from delegate.metrics import Metrics


class Liveness:
    def __init__(self, registration: Registration, metrics: Metrics, stale_after_s: float) -> None:
        self._registration = registration
        self._metrics = metrics
        self._stale_after_s = stale_after_s
        self.last_ack_monotonic: float | None = None
        self.last_error: str | None = None

    def acked(self) -> None:
        self.last_ack_monotonic = time.monotonic()
        self.last_error = None
        self._metrics.connected.set(1)

    def failed(self, error: str) -> None:
        self.last_error = error
        self._metrics.connected.set(1 if self.verdict()[0] else 0)

    def verdict(self) -> tuple[bool, str]:
        """(ok, reason) for /health."""
        if not self._registration.is_registered():
            return False, f"not registered: {self.last_error or 'registering'}"
        if self.last_ack_monotonic is None:
            return False, "registered, no heartbeat acknowledged yet"
        age = time.monotonic() - self.last_ack_monotonic
        if age > self._stale_after_s:
            return False, f"last heartbeat acknowledged {age:.0f}s ago: {self.last_error or ''}"
        return True, "ok"
