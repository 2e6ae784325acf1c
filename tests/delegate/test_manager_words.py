"""The real manager's plain-string stream messages, and the same words as a JSON `eventType`."""

from __future__ import annotations

import pytest

from delegate.errors import SelfDestruct, TokenRevoked
from delegate.stream import manager_says


@pytest.mark.parametrize("word", ["REVOKED_TOKEN", "EXPIRED_TOKEN"])
def test_a_revoked_or_expired_token_ends_the_delegate_for_a_new_token(word: str) -> None:
    with pytest.raises(TokenRevoked, match=word):
        manager_says(word, "d1")


@pytest.mark.parametrize("word", ["INVALID_TOKEN", "SELF_DESTRUCT", "SELF_DESTRUCTd1"])
def test_invalid_token_and_self_destruct_for_this_delegate_self_destruct(word: str) -> None:
    with pytest.raises(SelfDestruct):
        manager_says(word, "d1")


@pytest.mark.parametrize("word", ["SELF_DESTRUCTd2", "MIGRATEhttps://other.example.com", "HELLO"])
def test_other_words_are_logged_and_the_delegate_goes_on(word: str) -> None:
    manager_says(word, "d1")  # no exception: a message for another delegate, MIGRATE, unknown
