"""Capability checks: what a delegate verifies before it may take a task.

A check type is a coroutine `(params, proxy) -> (ok, message)`; `proxy` is the delegate's
`ProxyRules` (PROXY_* / HTTPS_PROXY, NO_PROXY decided per URL), so a check reaches its endpoint the
way the task would. `HTTP` (can this delegate reach a URL) lives
here; the ECS check (credentials valid, region and cluster reachable) registers itself from
`delegate.ecs`. An unknown type fails its check with a clear message rather than the delegate.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from delegate import log, retry
from delegate.client import ManagerClient
from delegate.errors import DelegateError
from delegate.identity import Identity
from delegate.proxy import ProxyRules
from protocol import wire

_log = log.get("delegate.tasks.capabilities")

Check = Callable[[dict[str, Any], ProxyRules], Awaitable[tuple[bool, str]]]
_checks: dict[str, Check] = {}
_LAZY = {"ECS": "delegate.ecs.capability"}


def capability(name: str) -> Callable[[Check], Check]:
    def decorate(fn: Check) -> Check:
        _checks[name] = fn
        return fn

    return decorate


@capability("HTTP")
async def http_check(params: dict[str, Any], proxy: ProxyRules) -> tuple[bool, str]:
    url = params.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return False, "HTTP capability needs params.url, an http(s) URL"
    timeout = aiohttp.ClientTimeout(total=float(params.get("timeoutS", 10)))
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, allow_redirects=True, proxy=proxy.for_url(url)) as resp,
        ):
            # Reachable is what matters; like Harness, any HTTP answer below 500 counts.
            if resp.status < 500:
                return True, f"{url} answered {resp.status}"
            return False, f"{url} answered {resp.status}"
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return False, f"{url} unreachable: {type(exc).__name__}"


async def run_checks(capabilities: list[wire.Capability],
                     proxy: ProxyRules | None = None) -> list[wire.CapabilityResult]:
    rules = proxy if proxy is not None else ProxyRules()

    async def one(cap: wire.Capability) -> wire.CapabilityResult:
        check = _checks.get(cap.capability_type)
        if check is None and cap.capability_type in _LAZY:
            importlib.import_module(_LAZY[cap.capability_type])
            check = _checks.get(cap.capability_type)
        if check is None:
            return wire.CapabilityResult(
                capability_type=cap.capability_type, ok=False,
                message=f"unknown capability type {cap.capability_type!r}; known: "
                f"{sorted(set(_checks) | set(_LAZY))}",
            )
        try:
            ok, message = await check(cap.params, rules)
        except Exception as exc:  # noqa: BLE001 - a broken check fails itself, not the delegate
            ok, message = False, f"check raised {type(exc).__name__}: {exc}"
        return wire.CapabilityResult(capability_type=cap.capability_type, ok=ok, message=message)

    return list(await asyncio.gather(*(one(c) for c in capabilities)))


async def assign_after_checks(
    client: ManagerClient, who: Identity, task_id: str, package: wire.DelegateTaskPackage,
    proxy: ProxyRules,
) -> wire.DelegateTaskPackage | None:
    """Run the task's capability checks and report them; the manager answers with the package,
    assigned to this process or not (None: it could not be asked, or refused)."""
    results = await run_checks(package.capabilities, proxy)
    passed = all(r.ok for r in results)
    _log.info("task.capabilities_checked", passed=passed,
              results=[f"{r.capability_type}: {r.message}" for r in results])
    report = wire.CapabilityReport(delegate_instance_id=who.instance_id, results=results)
    try:
        return await retry.call(
            "task.report", lambda: client.report(who.delegate_id, task_id, report), retry.QUICK)
    except DelegateError as exc:
        _log.info("task.not_assigned_after_checks", error=str(exc))
        return None
