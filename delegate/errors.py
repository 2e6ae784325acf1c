"""The delegate's exception tree, split by meaning.

`TransientError` subclasses are worth retrying (the one retry policy in `retry.py` retries only
those); `PermanentError` subclasses are not: retrying a wrong token or a malformed task only spins.
Every message says what failed, with which input, and what to do; none carries a secret.
"""

from __future__ import annotations


class DelegateError(Exception):
    """Root of every error the delegate raises on purpose."""


class TransientError(DelegateError):
    """May succeed if tried again later (network, 5xx, throttling)."""


class PermanentError(DelegateError):
    """Will fail the same way again until someone changes something."""


class ConfigError(PermanentError):
    """The environment the delegate was started with is not usable."""


# --- the manager -------------------------------------------------------------------------------


class ManagerUnavailable(TransientError):
    """The manager could not be reached or answered 5xx / 429."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ManagerRejected(PermanentError):
    """The manager answered 4xx: the request itself is wrong for it."""

    def __init__(self, message: str, status: int, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class AuthRejected(ManagerRejected):
    """401/403: the delegate token does not match the account."""


class ProtocolViolation(PermanentError):
    """The manager answered something the protocol does not allow (not JSON, wrong shape)."""


class SelfDestruct(PermanentError):
    """The manager told this delegate to go away (action SELF_DESTRUCT)."""


class TokenRevoked(PermanentError):
    """The manager refused the delegate token as revoked or expired: a new token is needed."""


class Superseded(PermanentError):
    """Another process registered as this delegate: finish what runs, take nothing new, exit 0."""


# --- tasks -------------------------------------------------------------------------------------


class TaskError(PermanentError):
    """A task cannot run as given: unknown type, invalid data, too large."""


class TaskCancelled(DelegateError):
    """A task was aborted by the manager or timed out."""


# --- AWS ---------------------------------------------------------------------------------------


class AwsError(DelegateError):
    """An AWS call failed; carries the AWS error code and message, never credentials."""

    def __init__(self, message: str, code: str | None = None, operation: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.operation = operation


class AwsTransientError(AwsError, TransientError):
    """Throttling or a 5xx from AWS that botocore's own retries did not absorb."""


class AwsPermanentError(AwsError, PermanentError):
    """Access denied, not found, invalid parameter: the task must change."""
