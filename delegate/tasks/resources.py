"""DELEGATE_RESOURCE_THRESHOLD: refuse new work while CPU or memory use is above it."""

from __future__ import annotations

import time

import psutil


class ResourceGuard:
    def __init__(self, threshold_percent: float, sample_every_s: float = 1.0) -> None:
        self.threshold = threshold_percent
        self._every = sample_every_s
        self._at = 0.0
        self._verdict: str | None = None
        psutil.cpu_percent(None)  # prime the CPU counter: the first call always says 0.0

    def over(self) -> str | None:
        """A reason while above the threshold, else None. Samples at most once per interval."""
        now = time.monotonic()
        if now - self._at >= self._every:
            self._at = now
            cpu = psutil.cpu_percent(None)
            mem = psutil.virtual_memory().percent
            if cpu > self.threshold:
                self._verdict = f"CPU at {cpu:.0f}% > {self.threshold:.0f}%"
            elif mem > self.threshold:
                self._verdict = f"memory at {mem:.0f}% > {self.threshold:.0f}%"
            else:
                self._verdict = None
        return self._verdict
