"""People log in: API keys with roles (hashed at rest), the pages behind a login form and a session
cookie (HttpOnly, Secure under TLS, SameSite), CSRF on every form, the download needs a login."""

from __future__ import annotations

import stat

import aiohttp
import pytest

from manager.app import ManagerServer
from tests.manager.conftest import Setup, login

pytestmark = pytest.mark.timeout(30)
PAGES = ["/", "/ui/delegates", "/ui/tasks", "/ui/install-delegate",
         "/ui/install-delegate/ecs-task-spec?delegateGroupName=g"
         "&image=registry.example.com/harness-delegate:1.0.0"]


async def test_no_page_and_no_download_without_a_login(session: aiohttp.ClientSession,
                                                       server: ManagerServer) -> None:
    for path in PAGES:
        async with session.get(server.url + path, allow_redirects=False) as resp:
            body = await resp.read()
            assert resp.status == 303 and resp.headers["Location"] == "/ui/login", path
            assert server.account.delegate_token.encode() not in body
    async with session.get(f"{server.url}/ui/tasks/x/poll") as resp:
        assert resp.status == 401
    async with session.get(f"{server.url}/api/setup/delegates/ecs-task-spec?delegateGroupName=g"
                           ) as resp:
        assert resp.status == 401


async def test_login_sets_a_strict_session_cookie_and_opens_the_pages(
        session: aiohttp.ClientSession, server: ManagerServer) -> None:
    bad = await login(session, server, key="hmk_not-a-key")
    assert bad.status == 401
    resp = await login(session, server)
    assert resp.status == 303
    cookie = resp.cookies["hm_session"]
    assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Strict"
    for path in PAGES[:-1]:
        async with session.get(server.url + path) as page:
            text = await page.text()
            assert page.status == 200 and "<nav>" in text and "Log in" not in text, path
    async with session.get(server.url + PAGES[-1]) as download:  # admin: the bootstrap key
        assert download.status == 200
        assert download.headers["Content-Type"] == "application/gzip"


async def test_every_form_needs_its_csrf_token(session: aiohttp.ClientSession,
                                               server: ManagerServer) -> None:
    async with session.post(f"{server.url}/ui/login",
                            data={"key": server.account.api_key}) as resp:  # no CSRF
        assert resp.status == 401
        assert "hm_session" not in resp.cookies
    await login(session, server)
    async with session.post(f"{server.url}/ui/logout", data={"csrf": "forged"},
                            allow_redirects=False) as resp:
        assert resp.status == 403
    async with session.get(f"{server.url}/ui/delegates") as page:
        text = await page.text()
    csrf = text.split("name='csrf' value='", 1)[1].split("'", 1)[0]
    async with session.post(f"{server.url}/ui/logout", data={"csrf": csrf},
                            allow_redirects=False) as resp:
        assert resp.status == 303
    async with session.get(f"{server.url}/ui/delegates", allow_redirects=False) as resp:
        assert resp.status == 303  # logged out


async def test_roles_limit_what_a_key_may_do(session: aiohttp.ClientSession, setup: Setup,
                                             server: ManagerServer) -> None:
    keys = {role: (await setup.call("POST", "/api/setup/api-keys",
                                    {"name": f"k-{role}", "role": role}))["value"]
            for role in ("viewer", "deployer")}

    async def status(role: str, method: str, path: str, body: object = None) -> int:
        headers = {"Authorization": f"Bearer {keys[role]}"}
        async with session.request(method, server.url + path, json=body,
                                   headers=headers) as resp:
            return resp.status

    task = {"taskType": "SHELL_SCRIPT", "data": {"script": "true"}}
    assert await status("viewer", "GET", "/api/setup/tasks") == 200
    assert await status("viewer", "POST", "/api/setup/tasks", task) == 403
    assert await status("deployer", "POST", "/api/setup/tasks", task) == 200
    for role in ("viewer", "deployer"):
        assert await status(role, "GET", "/api/setup/delegate-tokens") == 403
        assert await status(role, "POST", "/api/setup/api-keys",
                            {"name": "x", "role": "admin"}) == 403
        assert await status(role, "GET", "/api/setup/delegates/ecs-task-spec") == 403
    await login(session, server, keys["viewer"])
    async with session.get(f"{server.url}/ui/install-delegate/ecs-task-spec?"
                           "delegateGroupName=g") as resp:
        assert resp.status == 403  # the download holds a token: admin only
    await setup.call("POST", "/api/setup/api-keys/k-viewer/revoke", {})
    async with session.get(f"{server.url}/ui/delegates", allow_redirects=False) as resp:
        assert resp.status == 303  # a revoked key's sessions end
    assert await status("viewer", "GET", "/api/setup/tasks") == 401


async def test_keys_are_hashed_at_rest_and_the_first_one_is_owner_only(
        setup: Setup, server: ManagerServer) -> None:
    made = await setup.call("POST", "/api/setup/api-keys", {"name": "ci", "role": "deployer"})
    listed = (await setup.call("GET", "/api/setup/api-keys"))["keys"]
    assert {k["name"] for k in listed} == {"bootstrap", "ci"} and made["value"] not in str(listed)
    assert server.manager is not None
    stored = repr([tuple(r) for r in server.manager.conn.execute("SELECT * FROM api_keys")])
    stored += repr(tuple(server.manager.conn.execute("SELECT * FROM account").fetchone()))
    assert made["value"] not in stored and server.account.api_key not in stored
    first = server.settings.data_dir / "admin-api-key"
    assert first.read_text().strip() == server.account.api_key
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
