"""`python -m watcher.verify`: check Ed25519 signatures in a short-lived process.

Reads one JSON request on stdin: `{"message": b64, "signatures": [{"keyid", "sig": b64}],
"keys": [b64 raw public key]}`. Exit 0 and print the key id of the first trusted key whose signature
verifies; exit 1 and print why not. Run by `watcher/trust.py`, so the watcher itself never loads
`cryptography`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def judge(request: dict[str, object]) -> tuple[bool, str]:
    message = base64.b64decode(str(request["message"]))
    keys = {hashlib.sha256(raw).hexdigest()[:16]: raw
            for raw in (base64.b64decode(str(k)) for k in request["keys"])}  # type: ignore[attr-defined]
    tried: list[str] = []
    for entry in request["signatures"]:  # type: ignore[attr-defined]
        keyid = str(entry["keyid"])
        raw = keys.get(keyid)
        if raw is None:
            tried.append(f"{keyid} (not a trusted key)")
            continue
        try:
            Ed25519PublicKey.from_public_bytes(raw).verify(base64.b64decode(str(entry["sig"])), message)
        except (InvalidSignature, binascii.Error, ValueError):
            tried.append(f"{keyid} (bad signature)")
            continue
        return True, keyid
    if not tried:
        return False, "unsigned: the signature file has no signatures"
    return False, "no valid signature by a trusted key; signatures: " + ", ".join(tried)


def main() -> int:
    try:
        ok, answer = judge(json.loads(sys.stdin.read()))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        ok, answer = False, f"malformed signature data ({type(exc).__name__}: {exc})"
    print(answer)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
