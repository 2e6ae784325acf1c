"""The delegate warns (once, at start) when MANAGER_HOST_AND_PORT is plain http beyond loopback."""

from __future__ import annotations

import pytest

from delegate.agent import plain_http_warning


@pytest.mark.parametrize("url", ["http://manager.example.com:80", "http://10.1.2.3:8080",
                                 "http://[2001:db8::1]:80"])
def test_plain_http_to_another_host_is_named(url: str) -> None:
    warning = plain_http_warning(url)
    assert warning is not None and "MANAGER_HOST_AND_PORT" in warning and "https://" in warning


@pytest.mark.parametrize("url", ["https://manager.example.com:443", "http://127.0.0.1:8080",
                                 "http://localhost:9", "http://[::1]:80", "https://10.1.2.3"])
def test_tls_or_loopback_is_quiet(url: str) -> None:
    assert plain_http_warning(url) is None
