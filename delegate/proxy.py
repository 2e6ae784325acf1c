"""The proxy for the delegate's outgoing calls other than the manager's (AWS, capability checks).

Which URLs bypass it is `protocol.noproxy.bypassed` (NO_PROXY with `*`, suffixes, host:port, CIDR),
the one matcher the watcher's downloads use too. The proxy URL can carry credentials: never log it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.noproxy import bypassed

__all__ = ["ProxyRules", "bypassed"]


@dataclass(frozen=True)
class ProxyRules:
    """The proxy for outgoing calls other than the manager's (PROXY_MANAGER does not apply)."""

    url: str | None = field(default=None, repr=False)
    no_proxy: str | None = None

    def for_url(self, url: str) -> str | None:
        if not self.url or bypassed(url, self.no_proxy):
            return None
        return self.url
