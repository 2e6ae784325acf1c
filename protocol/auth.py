"""Manager authentication as the real delegate does it.

Each call carries `Authorization: Delegate <token>` where the token is an *encrypted* JWT: JWE
compact serialisation, `alg=dir`, `enc=A128GCM`, keyed by the 16 bytes that the delegate token's
32 hex characters spell. Claims: iss=hostname, sub=accountId, aud=manager URL, exp=now+30 min, nbf,
iat, jti. A token is cached and renewed 5 minutes before it expires.

The manager side (`decrypt`) lives here too so that both ends share one implementation of the
format; the key itself never leaves this module in any printable form.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

TOKEN_TTL_S = 30 * 60
RENEW_BEFORE_S = 5 * 60
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
_HEADER = {"alg": "dir", "enc": "A128GCM"}


class InvalidDelegateToken(ValueError):
    """The delegate token is not 32 hex characters (nor base64 of them). Never holds the value."""


class TokenRejected(Exception):
    """A presented JWE did not decrypt under the account key or its claims are wrong."""


def normalize_token(raw: str) -> str:
    """Accept 32 hex chars, or base64 of them (as some task specs carry it); return lowercase hex."""
    value = raw.strip()
    if _HEX32.match(value):
        return value.lower()
    try:
        decoded = base64.b64decode(value, validate=True).decode("ascii").strip()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if _HEX32.match(decoded):
        return decoded.lower()
    raise InvalidDelegateToken("expected 32 hexadecimal characters, or base64 of them")


def _key(token_hex: str) -> OctKey:
    return OctKey.import_key(bytes.fromhex(token_hex))


@dataclass
class _Cached:
    value: str
    expires_at: float


class TokenProvider:
    """Makes and caches the delegate's JWE; cheap to call before every request."""

    def __init__(self, *, token_hex: str, account_id: str, host_name: str, audience: str) -> None:
        self._key = _key(token_hex)
        self._account_id = account_id
        self._host_name = host_name
        self._audience = audience
        self._cached: _Cached | None = None

    def __repr__(self) -> str:  # never show the key
        return f"TokenProvider(account_id={self._account_id!r})"

    def get(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if self._cached is None or now >= self._cached.expires_at - RENEW_BEFORE_S:
            self._cached = _Cached(self._make(now), now + TOKEN_TTL_S)
        return self._cached.value

    def _make(self, now: float) -> str:
        claims = {
            "iss": self._host_name,
            "sub": self._account_id,
            "aud": self._audience,
            "iat": int(now),
            "nbf": int(now) - 60,
            "exp": int(now) + TOKEN_TTL_S,
            "jti": str(uuid.uuid4()),
        }
        return jwe.encrypt_compact(_HEADER, json.dumps(claims).encode(), self._key)


def decrypt(token: str, *, token_hex: str, account_id: str, now: float | None = None,
            leeway_s: int = 60) -> dict[str, Any]:
    """Manager side: check that `token` was made with this account's key and is current."""
    now = time.time() if now is None else now
    try:
        result = jwe.decrypt_compact(token, _key(token_hex))
        if result.protected.get("alg") != "dir" or result.protected.get("enc") != "A128GCM":
            raise TokenRejected("token must be JWE dir/A128GCM")
        claims: dict[str, Any] = json.loads(result.plaintext or b"")
    except (JoseError, ValueError, TypeError) as exc:
        raise TokenRejected("token does not decrypt with this account's key") from exc
    if not isinstance(claims, dict):
        raise TokenRejected("token claims are not an object")
    if claims.get("sub") != account_id:
        raise TokenRejected("token was issued for another account")
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, int) or now > exp + leeway_s:
        raise TokenRejected("token expired")
    if isinstance(nbf, int) and now < nbf - leeway_s:
        raise TokenRejected("token not yet valid")
    return claims
