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
