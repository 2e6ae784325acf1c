"""NO_PROXY in the forms people write it (delegate/proxy.py)."""

from __future__ import annotations

import pytest

from delegate.proxy import ProxyRules, bypassed


@pytest.mark.parametrize(("url", "no_proxy", "direct"), [
    ("https://ecs.us-east-1.amazonaws.com/", "*", True),
    ("https://ecs.us-east-1.amazonaws.com/", "amazonaws.com", True),
    ("https://ecs.us-east-1.amazonaws.com/", ".amazonaws.com", True),
    ("https://ecs.us-east-1.amazonaws.com/", "*.amazonaws.com", True),
    ("https://notamazonaws.com/", "amazonaws.com", False),
    ("https://ecs.us-east-1.amazonaws.com/", "ecs.us-east-1.amazonaws.com:443", True),
    ("https://ecs.us-east-1.amazonaws.com/", "ecs.us-east-1.amazonaws.com:8443", False),
    ("http://10.1.2.3:4566/", "10.0.0.0/8", True),
    ("http://10.1.2.3:4566/", "10.1.2.3", True),
    ("http://11.1.2.3:4566/", "10.0.0.0/8", False),
    ("http://[::1]:4566/", "::1/128", True),
    ("https://sts.amazonaws.com/", "example.com, 10.0.0.0/8", False),
    ("https://sts.amazonaws.com/", "", False),
])
def test_no_proxy_forms(url: str, no_proxy: str, direct: bool) -> None:
    assert bypassed(url, no_proxy) is direct


def test_rules_give_the_proxy_unless_bypassed_and_never_show_it() -> None:
    rules = ProxyRules("http://user:pw@proxy:3128", "internal.example")
    assert rules.for_url("https://ecs.us-east-1.amazonaws.com") == "http://user:pw@proxy:3128"
    assert rules.for_url("https://git.internal.example") is None
    assert ProxyRules(None, None).for_url("https://x") is None
    assert "pw" not in repr(rules)
