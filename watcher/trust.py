"""Signed artifacts: nothing runs that is not signed by a key the watcher was given.

Each published artifact has a signature file beside it (`<artifact>.sig`, JSON, after TUF's signed
metadata):

    {"signed": {"type": "harness-artifact", "kind": "delegate", "version": "2.0.0",
                "sha256": "<hex>", "length": 123456, "expires": "2027-01-01T00:00:00Z"},
     "signatures": [{"keyid": "<first 16 hex of sha256(public key)>", "sig": "<base64 Ed25519>"}]}

The signature covers the canonical JSON of `signed` (sorted keys, no spaces, ASCII). It binds the
bytes (sha256, length) to a kind and a version, so an artifact cannot be swapped for another kind or
replayed as another version, and it expires, so a feed frozen on an old release is noticed. Keys
are raw Ed25519 public keys in base64: those in the image (`watcher/trusted_keys.txt`), or
WATCHER_TRUSTED_KEYS instead.

Before every start the artifact is read into memory, checked, and copied into a sealed memfd that
the new process runs from (`/proc/self/fd/N`): what was verified is what runs, and a file rewritten
in `versions/` afterwards changes nothing. The Ed25519 check itself runs in a short-lived
`python -m watcher.verify` (the `cryptography` package costs ~8 MiB resident that the watcher would
otherwise carry for the container's life).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import fcntl
import hashlib
import json
import os
import pkgutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

SIG_SUFFIX = ".sig"
MAX_SIG_BYTES = 64 * 1024
VERIFY_TIMEOUT_S = 30.0
_TYPE = "harness-artifact"
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


class Refused(Exception):
    """The artifact or its signature is not acceptable; the message says why."""


def key_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def canonical(signed: dict[str, Any]) -> bytes:
    return json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def parse_keys(text: str) -> tuple[bytes, ...]:
    """Base64 Ed25519 public keys separated by commas, spaces or lines; `#` starts a comment."""
    keys: list[bytes] = []
    for line in text.splitlines():
        for word in line.partition("#")[0].replace(",", " ").split():
            try:
                raw = base64.b64decode(word, validate=True)
            except binascii.Error:
                raise ValueError(f"{word[:60]!r} is not base64") from None
            if len(raw) != 32:
                raise ValueError(f"{word[:60]!r} is {len(raw)} bytes, an Ed25519 public key is 32")
            keys.append(raw)
    return tuple(keys)


def image_keys() -> tuple[bytes, ...]:
    """The release keys baked into this watcher (package data, so also inside a watcher artifact)."""
    try:
        data = pkgutil.get_data("watcher", "trusted_keys.txt")
    except OSError:
        return ()
    return parse_keys((data or b"").decode("utf-8"))


@dataclass(frozen=True)
class Signed:
    kind: str
    version: str
    sha256: str
    length: int
    expires: dt.datetime
    message: bytes  # the canonical bytes the signatures cover
    signatures: tuple[tuple[str, str], ...]  # (keyid, base64 signature)


def parse_signed(data: bytes, source: str) -> Signed:
    try:
        doc = json.loads(data)
        signed = doc["signed"]
        sigs = tuple((str(s["keyid"]), str(s["sig"])) for s in doc["signatures"])
        if signed["type"] != _TYPE:
            raise ValueError(f"type {signed['type']!r}")  # noqa: TRY301
        expires = dt.datetime.fromisoformat(str(signed["expires"]))
        if expires.tzinfo is None:
            raise ValueError("expires has no time zone")  # noqa: TRY301
        return Signed(str(signed["kind"]), str(signed["version"]), str(signed["sha256"]).lower(),
                      int(signed["length"]), expires, canonical(signed), sigs)
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise Refused(f"{source} is not a signature file ({type(exc).__name__}: {exc})") from None


def check(signed: Signed, kind: str, version: str, data: bytes, now: dt.datetime | None) -> None:
    """What the signature vouches for must be these bytes, this kind and version (and, with `now`,
    still current). Raises Refused."""
    if signed.kind != kind or signed.version != version:
        raise Refused(f"signed for {signed.kind} {signed.version}, not {kind} {version}")
    digest = hashlib.sha256(data).hexdigest()
    if signed.sha256 != digest or signed.length != len(data):
        raise Refused(f"the artifact's sha256 is {digest} ({len(data)} bytes); the signed metadata "
                      f"says {signed.sha256} ({signed.length} bytes)")
    if now is not None and signed.expires <= now:
        raise Refused(f"the signature expired at {signed.expires.isoformat()}: publish (re-sign) "
                      "a current release")


def helper_env() -> dict[str, str]:
    """The environment of the watcher's short-lived helpers: none of its secrets (a same-uid script
    could read a helper's /proc/<pid>/environ while it runs)."""
    return {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}


def verify_signatures(signed: Signed, keys: tuple[bytes, ...]) -> str:
    """The key id of a trusted key whose signature over `signed` verifies; Refused otherwise."""
    if not keys:
        raise Refused("no trusted keys: set WATCHER_TRUSTED_KEYS or bake release keys into the image")
    request = json.dumps({"message": base64.b64encode(signed.message).decode(),
                          "signatures": [{"keyid": k, "sig": s} for k, s in signed.signatures],
                          "keys": [base64.b64encode(k).decode() for k in keys]})
    try:
        done = subprocess.run([sys.executable, "-I", "-m", "watcher.verify"], input=request,
                              capture_output=True, text=True, timeout=VERIFY_TIMEOUT_S, check=False,
                              env=helper_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Refused(f"the signature check could not run: {exc}") from None
    answer = done.stdout.strip()
    if done.returncode == 0 and answer in {key_id(k) for k in keys}:
        return answer
    if done.returncode == 1:
        raise Refused(answer)
    raise Refused(f"the signature check failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")


def sealed_copy(data: bytes, name: str) -> int:
    """A read-only in-memory file holding `data` (close-on-exec; the caller owns the fd)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd
