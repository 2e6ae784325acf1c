"""Who may call: delegates with `Authorization: Delegate <JWE>`, people with `Bearer <API key>`.

A JWE must decrypt under a delegate token of the account, name this manager's public URL as `aud`,
carry an `iat` that is not in the future and an `exp` at most 30 minutes after it (`protocol.auth`).

A rejected call gets 401 INVALID_TOKEN with the same message whatever was wrong, and nothing from
the presented token is ever logged or echoed. Tokens that decrypted once are remembered until their
`exp` (a delegate reuses one token for 25 minutes), so a hot path pays for AES-GCM once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from manager.db import Account
from manager.envelope import ApiError
from manager.people import People, Person, bearer
from manager.tokens import ACTIVE, REVOKED, DelegateTokens
from protocol.auth import TokenRejected, decrypt

_REJECTED = "the delegate token is missing, expired or not this account's; check DELEGATE_TOKEN"
_CACHE_MAX = 4096
_LEEWAY_S = 60


DEFAULT_TOKEN_NAME = "default"  # noqa: S105 (a name, not a secret)
_REVOKED = "the delegate token this delegate uses was revoked; install a new one (DELEGATE_TOKEN)"
_EXPIRED = "the delegate token this delegate uses has expired; install a new one (DELEGATE_TOKEN)"


class AgentAuth:
    def __init__(self, account: Account, tokens: DelegateTokens,
                 audience: Callable[[], str]) -> None:
        self._account = account
        self._tokens = tokens
        self._audience = audience  # the manager's public URL: what a delegate's `aud` must name
        #: JWE -> (valid until, token name); only tokens that were ACTIVE
        self._valid: dict[str, tuple[float, str]] = {}

    def forget(self) -> None:
        """A token was revoked or rotated: check every JWE again."""
        self._valid.clear()

    def check_token(self, token: str) -> str:
        """The name of the delegate token `token` was made with; 401 unless it is a current JWE
        of this account, made for `audience`, living no longer than a delegate token may, under
        a token that is neither revoked (REVOKED_TOKEN) nor expired (EXPIRED_TOKEN)."""
        now = time.time()
        cached = self._valid.get(token)
        if cached is not None and now <= cached[0] and self._tokens.usable(cached[1], now):
            return cached[1]
        for secret, name, state in self._tokens.candidates(int(now * 1000)):
            try:
                claims = decrypt(token, token_hex=secret, account_id=self._account.account_id,
                                 now=now, leeway_s=_LEEWAY_S, audience=self._audience())
            except TokenRejected:
                continue
            if state == REVOKED:
                raise ApiError(401, "REVOKED_TOKEN", _REVOKED)
            if state != ACTIVE:
                raise ApiError(401, "EXPIRED_TOKEN", _EXPIRED)
            if len(self._valid) >= _CACHE_MAX:
                self._valid.clear()
            self._valid[token] = (float(claims["exp"]) + _LEEWAY_S, name)
            return name
        raise ApiError(401, "INVALID_TOKEN", _REJECTED)

    @staticmethod
    def _token(request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        return header[len("Delegate "):].strip() if header.startswith("Delegate ") else ""

    def token_name(self, request: web.Request) -> str | None:
        """The name of the (already checked) token of this request."""
        cached = self._valid.get(self._token(request))
        return cached[1] if cached else None

    def check_request(self, request: web.Request) -> None:
        """Agent call: `Authorization: Delegate <JWE>` (never a URL parameter)."""
        token = self._token(request)
        if not token:
            raise ApiError(401, "INVALID_TOKEN", _REJECTED)
        self.check_token(token)
        account_id = request.query.get("accountId") or request.match_info.get("accountId")
        if account_id and account_id != self._account.account_id:
            raise ApiError(401, "INVALID_TOKEN", _REJECTED)


def check_api_key(request: web.Request, people: People, account: Account,
                  role: str = "viewer") -> Person:
    """A setup API call: `Authorization: Bearer <API key>` of a key whose role is at least `role`
    (401 without a live key, 403 with too small a role)."""
    person = people.by_key(bearer(request))
    if person is None:
        raise ApiError(401, "INVALID_TOKEN",
                       "send 'Authorization: Bearer <API key>' (harness-manager key create, or "
                       "DATA_DIR/admin-api-key for the first admin)")
    if not person.may(role):
        raise ApiError(403, "FORBIDDEN", f"API key {person.name!r} has role {person.role}; this "
                       f"call needs {role}")
    account_id = request.query.get("accountId")
    if account_id and account_id != account.account_id:
        raise ApiError(404, "NOT_FOUND", f"account {account_id!r} is not this manager's account")
    return person
