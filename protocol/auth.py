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
from urllib.parse import urlsplit

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


def same_audience(a: str, b: str) -> bool:
    """Two manager URLs name the same manager (case of scheme and host, default port, slash)."""
    def norm(url: str) -> tuple[str, str, int | None, str]:
        parts = urlsplit(url.strip())
        try:
            port = parts.port
        except ValueError:
            port = -1
        default = {"https": 443, "http": 80}.get(parts.scheme.lower())
        return (parts.scheme.lower(), (parts.hostname or "").lower(),
                None if port == default else port, parts.path.rstrip("/"))
    return norm(a) == norm(b)


def decrypt(token: str, *, token_hex: str, account_id: str, now: float | None = None,
            leeway_s: int = 60, audience: str | None = None) -> dict[str, Any]:
    """Manager side: check that `token` was made with this key for this account (and audience,
    when given), was issued now (iat not in the future) for at most `TOKEN_TTL_S`, and is current."""
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
    exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
    if not isinstance(exp, int) or now > exp + leeway_s:
        raise TokenRejected("token expired")
    if not isinstance(iat, int) or iat > now + leeway_s:
        raise TokenRejected("token has no issue time, or one in the future")
    if exp - iat > TOKEN_TTL_S + leeway_s:
        raise TokenRejected(f"token lives longer than {TOKEN_TTL_S} s")
    aud = claims.get("aud")
    if audience is not None and not (isinstance(aud, str) and same_audience(aud, audience)):
        raise TokenRejected("token was made for another manager (aud)")
    if isinstance(nbf, int) and now < nbf - leeway_s:
        raise TokenRejected("token not yet valid")
    return claims
