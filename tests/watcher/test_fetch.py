"""The watcher's HTTP reads against a real server on loopback: credentials go in a header and never
into a message, a redirect away from https is refused, and the download timeout is a total deadline
(a server that drips bytes cannot hold a check longer)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from watcher.fetch import FetchError, fetch


@pytest.fixture
async def server() -> AsyncIterator[str]:
    seen: dict[str, str] = {}

    async def check(request: web.Request) -> web.Response:
        seen["auth"] = request.headers.get("Authorization", "")
        return web.Response(text="1.2.3 delegate/1.2.3/delegate.pyz " + "a" * 64)

    async def away(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://storage.example.com/elsewhere")

    async def drip(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(40):  # 4 s in all, a byte every 0.1 s
            await resp.write(b"x")
            await asyncio.sleep(0.1)
        return resp

    async def seen_auth(request: web.Request) -> web.Response:
        return web.Response(text=seen.get("auth", ""))

    app = web.Application()
    app.router.add_get("/check", check)
    app.router.add_get("/away", away)
    app.router.add_get("/drip", drip)
    app.router.add_get("/seen", seen_auth)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"127.0.0.1:{port}"
    await runner.cleanup()


async def test_credentials_are_sent_as_basic_auth_and_never_in_a_message(server: str) -> None:
    body = await fetch(f"http://uploader:s3cr%40t@{server}/check", 5, 4096)
    assert body.startswith(b"1.2.3 ")
    seen = (await fetch(f"http://{server}/seen", 5, 4096)).decode()
    assert seen == "Basic " + base64.b64encode(b"uploader:s3cr@t").decode()
    with pytest.raises(FetchError) as info:
        await fetch(f"http://uploader:s3cr3t@{server}/missing", 5, 4096)
    assert "s3cr3t" not in str(info.value) and "uploader" not in str(info.value)
    assert f"http://***@{server}/missing" in str(info.value) and info.value.status == 404


async def test_a_redirect_away_from_https_is_refused(server: str) -> None:
    with pytest.raises(FetchError, match="not https: refused"):
        await fetch(f"http://{server}/away", 5, 4096)


async def test_the_download_timeout_is_a_total_deadline(server: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(FetchError, match="not read within WATCHER_DOWNLOAD_TIMEOUT_S=1"):
        await fetch(f"http://{server}/drip", 1, 1 << 20)  # each byte comes well within 1 s
    assert time.monotonic() - t0 < 3  # not the 4 s of dripping
