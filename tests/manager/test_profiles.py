"""Profiles: unchanged -> null, changed -> the script, removed -> NONE; delegate beats group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.manager.conftest import Agent, Setup

pytestmark = pytest.mark.timeout(20)


async def check(a: Agent, profile_id: str = "", last: int = 0) -> Any:
    status, body = await a.call(
        "GET", f"/api/agent/delegates/{a.delegate_id}/profile?profileId={profile_id}"
               f"&lastUpdatedAt={last}")
    assert status == 200, body
    return body["resource"]


async def test_profile_lifecycle(agent: Callable[..., Agent], setup: Setup) -> None:
    a = agent(delegateGroupName="g1")
    await a.register()
    assert await check(a) is None  # nothing applies, nothing known
    await setup.call("PUT", "/api/setup/profiles/p1", {"name": "tools", "script": "echo v1"})
    await setup.call("PUT", "/api/setup/groups/g1/profile", {"profileId": "p1"})
    first = await check(a)
    assert first["profileId"] == "p1"
    assert first["scriptContent"] == "echo v1"
    assert await check(a, "p1", first["profileLastUpdatedAt"]) is None  # unchanged
    await setup.call("PUT", "/api/setup/profiles/p1", {"name": "tools", "script": "echo v2"})
    changed = await check(a, "p1", first["profileLastUpdatedAt"])
    assert changed["scriptContent"] == "echo v2"
    assert changed["profileLastUpdatedAt"] > first["profileLastUpdatedAt"]
    status, _ = await a.call("POST", f"/api/agent/delegateFiles/{a.delegate_id}/profile-result",
                             {"profileId": "p1", "profileLastUpdatedAt":
                              changed["profileLastUpdatedAt"], "error": False, "output": "ok"})
    assert status == 200
    # a profile assigned to the delegate wins over its group's
    await setup.call("PUT", "/api/setup/profiles/p2", {"name": "mine", "script": "echo mine"})
    await setup.call("PUT", f"/api/setup/delegates/{a.delegate_id}/profile", {"profileId": "p2"})
    assert (await check(a, "p1", changed["profileLastUpdatedAt"]))["profileId"] == "p2"
    await setup.call("PUT", f"/api/setup/delegates/{a.delegate_id}/profile", {"profileId": None})
    await setup.call("PUT", "/api/setup/groups/g1/profile", {"profileId": None})
    assert await check(a, "p2", 1) == {"profileId": "NONE", "name": "",
                                       "profileLastUpdatedAt": 0}


async def test_assigning_an_unknown_profile_is_404(agent: Callable[..., Agent],
                                                   setup: Setup) -> None:
    a = agent()
    await a.register()
    await setup.call("PUT", f"/api/setup/delegates/{a.delegate_id}/profile",
                     {"profileId": "missing"}, expect=404)
