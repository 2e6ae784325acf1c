"""Which requests go through the proxy: NO_PROXY in the forms people write it.

    *                      nothing is proxied
    example.com            example.com and every host under it (also .example.com, *.example.com)
    example.com:8443       only that port
    10.0.0.0/8, 10.1.2.3   hosts given as addresses in that network, or that address

One matcher for every side that makes outgoing calls: the delegate (the manager, AWS calls and
capability checks: `delegate/proxy.py`) and the watcher's downloads (`watcher/fetch.py`). Standard
library only, so the stdlib-only watcher may import it (its zipapp carries `protocol/`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _matches(entry: str, host: str, port: int) -> bool:
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        network = None
    if network is not None:
        try:
            return ipaddress.ip_address(host.strip("[]")) in network
        except ValueError:
            return False
    name, sep, wanted = entry.rpartition(":")
    if sep and wanted.isdigit() and ":" not in name:
        if int(wanted) != port:
            return False
        entry = name
    entry = entry.lstrip("*").lstrip(".")
    return bool(entry) and (host == entry or host.endswith("." + entry))


def bypassed(url: str, no_proxy: str | None) -> bool:
    """Does NO_PROXY say `url` goes direct?"""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    for raw in (no_proxy or "").split(","):
        entry = raw.strip().lower()
        if entry == "*" or (entry and _matches(entry, host, port)):
            return True
    return False


@dataclass(frozen=True)
class ProxyRules:
    """A proxy URL and the NO_PROXY rules that bypass it. `url` may carry credentials: it is kept
    out of repr, and no caller may log it."""

    url: str | None = field(default=None, repr=False)
    no_proxy: str | None = None

    def for_url(self, url: str) -> str | None:
        """The proxy to use for `url`, or None to go direct."""
        if not self.url or bypassed(url, self.no_proxy):
            return None
        return self.url
