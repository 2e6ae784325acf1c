"""The proxy for the delegate's outgoing calls other than the manager's (AWS, capability checks).

Which URLs bypass it is `protocol.noproxy.bypassed` (NO_PROXY with `*`, suffixes, host:port, CIDR),
the one matcher the watcher's downloads use too. The proxy URL can carry credentials: never log it.
"""

from __future__ import annotations

from protocol.noproxy import ProxyRules, bypassed

__all__ = ["ProxyRules", "bypassed"]
