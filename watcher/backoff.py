"""The watcher's one retry policy: exponential, jittered, capped in delay and in attempts.

The watcher is stdlib-only to stay small (docs/watcher.md), so it does not load tenacity; and what it
retries is not a call but a process start driven by its state machine, which asks this policy how
long to wait before the next start and when to give up. It is the only backoff in `watcher/`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    initial_s: float  # the first delay
    max_s: float  # no delay is longer than this
    max_attempts: int  # failures in a row allowed; one more gives up
    jitter: float = 0.1  # each delay is spread by +-10 % so restarts do not march in step

    def delay(self, failures: int) -> float:
        """Seconds to wait after `failures` failures in a row (1 = the first failure)."""
        base = self.initial_s * 2.0 ** min(max(failures - 1, 0), 60)
        spread = random.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        return min(self.max_s, base * spread)

    def exhausted(self, failures: int) -> bool:
        return failures > self.max_attempts


def jittered(interval_s: float, jitter_s: float) -> float:
    """A periodic wait spread by +-`jitter_s` (upgrade checks), never below zero."""
    return max(0.0, interval_s + random.uniform(-jitter_s, jitter_s))
