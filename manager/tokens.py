"""Named delegate tokens: created, listed, revoked and rotated per account; secrets encrypted at rest.

A delegate token is 32 hex characters (the key of the delegate's JWE, `protocol.auth`). Each has a
name, unique in the account; the secret is stored AES-256-GCM-encrypted under the manager key
(`DATA_DIR/manager.key`, 32 random bytes, 0600, made at first start; back it up with the database:
without it the tokens cannot be read). The first start makes the token `default` from the account's
original token, which then leaves the account row.

Revoked: every call made with it answers 401 `REVOKED_TOKEN`, its streaming delegates get the plain
string `REVOKED_TOKEN` and are disconnected, and what they ran is handed back (re-queued). Past its
optional expiry: 401 `EXPIRED_TOKEN`. Rotated: a new secret under the same name; the old one keeps
working for the grace the caller gives (default none), so delegates can be moved over.

Storage is the small `TokenStore` seam (SQLite here).
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import structlog
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from manager.envelope import ApiError

log = structlog.get_logger("manager")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ACTIVE, REVOKED = "ACTIVE", "REVOKED"


def load_or_create_key(path: Path) -> bytes:
    """The manager key (0600), made once."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
        key = path.read_bytes()
        if len(key) != 32:
            raise ValueError(f"{path.name}: expected 32 bytes; restore it from the backup") from None
        return key
    key = AESGCM.generate_key(bit_length=256)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


@dataclass
class DelegateToken:
    name: str
    secret: str  # 32 hex characters, only ever in memory
    status: str
    created_at: int
    revoked_at: int | None = None
    expires_at: int | None = None
    previous_secret: str | None = None  # after a rotation, valid until previous_until
    previous_until: int | None = None

    def view(self, now: int) -> dict[str, object]:
        expired = self.expires_at is not None and now > self.expires_at
        return {"name": self.name, "status": "EXPIRED" if expired and self.status == ACTIVE
                else self.status, "createdAt": self.created_at, "revokedAt": self.revoked_at,
                "expiresAt": self.expires_at}


class TokenStore:
    """Where the tokens live (SQLite), encrypted with the manager key."""

    def __init__(self, conn: sqlite3.Connection, key: bytes) -> None:
        self._conn = conn
        self._aead = AESGCM(key)

    def _seal(self, name: str, secret: str | None) -> str | None:
        if secret is None:
            return None
        nonce = os.urandom(12)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, secret.encode(),
                                                           name.encode())).decode()

    def _open(self, name: str, sealed: str | None) -> str | None:
        if sealed is None:
            return None
        blob = base64.b64decode(sealed)
        return self._aead.decrypt(blob[:12], blob[12:], name.encode()).decode()

    def load_all(self) -> list[DelegateToken]:
        return [DelegateToken(
            r["name"], self._open(r["name"], r["secret_enc"]) or "", r["status"], r["created_at"],
            r["revoked_at"], r["expires_at"], self._open(r["name"], r["previous_enc"]),
            r["previous_until"]) for r in self._conn.execute("SELECT * FROM delegate_tokens")]

    def save(self, t: DelegateToken) -> None:
        self._conn.execute(
            "INSERT INTO delegate_tokens (name, secret_enc, status, created_at, revoked_at,"
            " expires_at, previous_enc, previous_until) VALUES (?,?,?,?,?,?,?,?)"
            " ON CONFLICT(name) DO UPDATE SET secret_enc=excluded.secret_enc,"
            " status=excluded.status, revoked_at=excluded.revoked_at,"
            " expires_at=excluded.expires_at, previous_enc=excluded.previous_enc,"
            " previous_until=excluded.previous_until",
            (t.name, self._seal(t.name, t.secret), t.status, t.created_at, t.revoked_at,
             t.expires_at, self._seal(t.name, t.previous_secret), t.previous_until))


class DelegateTokens:
    def __init__(self, store: TokenStore) -> None:
        self._store = store
        self.by_name = {t.name: t for t in store.load_all()}

    def reload(self) -> None:
        """Take what other replicas changed (called by the periodic job)."""
        self.by_name = {t.name: t for t in self._store.load_all()}

    def ensure_default(self, name: str, secret: str, now: int) -> None:
        if not self.by_name and secret:
            self._put(DelegateToken(name, secret, ACTIVE, now))

    def _put(self, t: DelegateToken) -> DelegateToken:
        self._store.save(t)
        self.by_name[t.name] = t
        return t

    def require(self, name: str) -> DelegateToken:
        found = self.by_name.get(name)
        if found is None:
            raise ApiError(404, "NOT_FOUND", f"no delegate token named {name!r}; list them with "
                                             "GET /api/setup/delegate-tokens")
        return found

    def create(self, name: str, now: int, valid_for_s: int | None = None) -> DelegateToken:
        if not _NAME.match(name):
            raise ApiError(400, "INVALID_REQUEST", f"field 'name': {name[:70]!r} is not a token "
                           "name (letters, digits and ._-, at most 64, starting with a letter "
                           "or digit)")
        if name in self.by_name:
            raise ApiError(409, "CONFLICT", f"a delegate token named {name!r} exists; rotate it "
                           "or pick another name")
        expires = now + valid_for_s * 1000 if valid_for_s else None
        log.info("token.created", name=name)
        return self._put(DelegateToken(name, secrets.token_hex(16), ACTIVE, now,
                                       expires_at=expires))

    def revoke(self, name: str, now: int) -> DelegateToken:
        t = self.require(name)
        if t.status != REVOKED:
            t.status, t.revoked_at = REVOKED, now
            t.previous_secret = t.previous_until = None
            self._store.save(t)
            log.warning("token.revoked", name=name)
        return t

    def rotate(self, name: str, now: int, grace_s: int = 0) -> DelegateToken:
        t = self.require(name)
        if t.status == REVOKED:
            raise ApiError(409, "CONFLICT", f"delegate token {name!r} is revoked; create a new one")
        t.previous_secret = t.secret if grace_s > 0 else None
        t.previous_until = now + grace_s * 1000 if grace_s > 0 else None
        t.secret = secrets.token_hex(16)
        self._store.save(t)
        log.info("token.rotated", name=name, grace_s=grace_s)
        return t

    def usable(self, name: str, now_s: float) -> bool:
        t = self.by_name.get(name)
        return t is not None and t.status == ACTIVE and (
            t.expires_at is None or now_s * 1000 <= t.expires_at)

    def candidates(self, now: int) -> list[tuple[str, str, str]]:
        """(secret, name, state) for every key a JWE may have been made with; state is ACTIVE,
        REVOKED or EXPIRED."""
        found = []
        for t in self.by_name.values():
            state = t.status
            if state == ACTIVE and t.expires_at is not None and now > t.expires_at:
                state = "EXPIRED"
            found.append((t.secret, t.name, state))
            if t.previous_secret and t.previous_until and now <= t.previous_until:
                found.append((t.previous_secret, t.name, state))
        return found
