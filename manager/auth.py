"""Who may call: delegates with `Authorization: Delegate <JWE>`, people with `Bearer <API key>`.

A rejected call gets 401 INVALID_TOKEN with the same message whatever was wrong, and nothing from
the presented token is ever logged or echoed. Tokens that decrypted once are remembered until their
`exp` (a delegate reuses one token for 25 minutes), so a hot path pays for AES-GCM once.
"""

from __future__ import annotations

import hmac
import time

from aiohttp import web

from manager.db import Account
from manager.envelope import ApiError
from protocol.auth import TokenRejected, decrypt

_REJECTED = "the delegate token is missing, expired or not this account's; check DELEGATE_TOKEN"
_CACHE_MAX = 4096
_LEEWAY_S = 60


class AgentAuth:
    def __init__(self, account: Account) -> None:
        self._account = account
        self._valid_until: dict[str, float] = {}

    def check_token(self, token: str) -> None:
        """Raise 401 unless `token` is a current JWE for this account."""
        now = time.time()
        until = self._valid_until.get(token)
        if until is not None and now <= until:
            return
        try:
            claims = decrypt(token, token_hex=self._account.delegate_token,
                             account_id=self._account.account_id, now=now, leeway_s=_LEEWAY_S)
        except TokenRejected as exc:
            raise ApiError(401, "INVALID_TOKEN", _REJECTED) from exc
        if len(self._valid_until) >= _CACHE_MAX:
            self._valid_until.clear()
        self._valid_until[token] = float(claims["exp"]) + _LEEWAY_S

    def check_request(self, request: web.Request, *, query_token: bool = False) -> None:
        """Agent call: `Authorization: Delegate <JWE>` (or `?token=` on the stream)."""
        header = request.headers.get("Authorization", "")
        token = header[len("Delegate "):].strip() if header.startswith("Delegate ") else ""
        if not token and query_token:
            token = request.query.get("token", "")
        if not token:
            raise ApiError(401, "INVALID_TOKEN", _REJECTED)
        self.check_token(token)
        account_id = request.query.get("accountId") or request.match_info.get("accountId")
        if account_id and account_id != self._account.account_id:
            raise ApiError(401, "INVALID_TOKEN", _REJECTED)


def check_api_key(request: web.Request, account: Account) -> None:
    header = request.headers.get("Authorization", "")
    presented = header[len("Bearer "):].strip() if header.startswith("Bearer ") else ""
    if not presented or not hmac.compare_digest(presented.encode(), account.api_key.encode()):
        raise ApiError(401, "INVALID_TOKEN",
                       "send 'Authorization: Bearer <DEVSTACK_API_KEY>' from DATA_DIR/delegate.env")
    account_id = request.query.get("accountId")
    if account_id and account_id != account.account_id:
        raise ApiError(404, "NOT_FOUND", f"account {account_id!r} is not this manager's account")
