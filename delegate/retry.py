"""The one retry policy (tenacity), used for every backoff in the delegate.

Each `RetryPolicy` names what it retries on (by default `TransientError`s only: never a malformed
task), must cap attempts or total time (or both), backs off exponentially with full jitter, honours a
server's `Retry-After`, and logs each retry as one `retry.scheduled` event. The users: registration
(`registration.py`), the stream's reconnect (`stream.py`), task acquire/report (`tasks/runner.py`),
result sending (`tasks/spool.py`), a task log's final flush (`tasks/logship.py`), and the ECS task
types' AWS calls (`ecs/aws.py`).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    stop_never,
)
from tenacity.stop import stop_base

from delegate import log
from delegate.errors import ManagerUnavailable, PermanentError, TransientError

T = TypeVar("T")
_log = log.get("delegate.retry")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. One of `max_attempts` / `max_total_s` may be None (no cap of that kind),
    never both: `call()` refuses a policy that would retry for ever."""

    initial_s: float = 0.2
    max_backoff_s: float = 10.0
    max_attempts: int | None = 5
    max_total_s: float | None = 60.0
    retry_on: tuple[type[BaseException], ...] = (TransientError,)
    #: errors the caller logs itself (each once): no `retry.scheduled` line repeats them
    logged_by_caller: tuple[type[BaseException], ...] = ()

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform(0, min(cap, initial * 2**(attempt-1))), never below a floor."""
        ceiling = min(self.max_backoff_s, self.initial_s * (2 ** max(attempt - 1, 0)))
        return max(self.initial_s / 4, random.uniform(0, ceiling))


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        delay = policy.backoff(state.attempt_number)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, PermanentError):
            # retried only where a person must act (a wrong token): slow, steady, never a spin
            delay = max(delay, min(2.0 ** (state.attempt_number - 1), policy.max_backoff_s))
        if isinstance(exc, ManagerUnavailable) and exc.retry_after_s is not None:
            delay = max(delay, min(exc.retry_after_s, policy.max_backoff_s * 6))
        return delay

    return wait


def _log_retry(what: str, policy: RetryPolicy) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, policy.logged_by_caller):
            return
        _log.warning(
            "retry.scheduled",
            what=what,
            attempt=state.attempt_number,
            wait_s=round(state.upcoming_sleep, 3),
            error=str(exc),
            error_type=type(exc).__name__,
        )

    return before_sleep


async def call(what: str, fn: Callable[[], Awaitable[T]], policy: RetryPolicy) -> T:
    """Run `fn` under `policy`; re-raise the last error when the policy gives up."""
    if policy.max_attempts is None and policy.max_total_s is None:
        raise ValueError(f"retry policy for {what} has no cap on attempts or time")
    stop: stop_base = stop_never
    if policy.max_attempts is not None:
        stop = stop_after_attempt(policy.max_attempts)
    if policy.max_total_s is not None:
        stop = stop | stop_after_delay(policy.max_total_s)
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(policy.retry_on),
        wait=_wait(policy),
        stop=stop,
        before_sleep=_log_retry(what, policy),
        reraise=True,
    ):
        with attempt:
            return await fn()
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover


#: ordinary calls (acquire, logs): a few quick tries
QUICK = RetryPolicy(initial_s=0.1, max_backoff_s=2.0, max_attempts=4, max_total_s=15.0)
