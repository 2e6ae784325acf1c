"""The delegate token: a JWE (dir/A128GCM) the manager can decrypt, cached and renewed."""

from __future__ import annotations

import json
import time

import pytest
from joserfc import jwe
from joserfc.jwk import OctKey

from protocol.auth import TokenProvider, TokenRejected, decrypt, normalize_token

KEY = "00112233445566778899aabbccddeeff"


def test_token_is_jwe_dir_a128gcm_with_the_claims() -> None:
    tokens = TokenProvider(token_hex=KEY, account_id="acc", host_name="h", audience="http://m")
    token = tokens.get()
    assert token.count(".") == 4  # JWE compact: five parts, empty encrypted key for "dir"
    plain = jwe.decrypt_compact(token, OctKey.import_key(bytes.fromhex(KEY)))
    assert plain.protected == {"alg": "dir", "enc": "A128GCM"}
    claims = json.loads(plain.plaintext or b"")
    assert claims["sub"] == "acc" and claims["iss"] == "h" and claims["aud"] == "http://m"
    assert claims["exp"] - claims["iat"] == 30 * 60
    assert claims["jti"]


def test_cached_then_renewed_five_minutes_before_expiry() -> None:
    tokens = TokenProvider(token_hex=KEY, account_id="acc", host_name="h", audience="m")
    now = time.time()
    first = tokens.get(now)
    assert tokens.get(now + 24 * 60) == first
    assert tokens.get(now + 25 * 60 + 1) != first


def test_manager_side_accepts_and_refuses() -> None:
    token = TokenProvider(token_hex=KEY, account_id="acc", host_name="h", audience="m").get()
    assert decrypt(token, token_hex=KEY, account_id="acc")["sub"] == "acc"
    with pytest.raises(TokenRejected):
        decrypt(token, token_hex="f" * 32, account_id="acc")
    with pytest.raises(TokenRejected):
        decrypt(token, token_hex=KEY, account_id="other")
    with pytest.raises(TokenRejected):
        decrypt(token, token_hex=KEY, account_id="acc", now=time.time() + 3600)
    with pytest.raises(TokenRejected):
        decrypt("garbage", token_hex=KEY, account_id="acc")


def test_normalize_token_forms() -> None:
    assert normalize_token(KEY.upper()) == KEY
    with pytest.raises(ValueError, match="32 hexadecimal") as info:
        normalize_token("nope-secret-value")
    assert "nope-secret-value" not in str(info.value)
