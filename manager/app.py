"""The local manager's web app and lifecycle.

Adding routes: write a module with `add_routes(app: web.Application) -> None` (look at
`setup_api.py`), reach the state with `request.app[MANAGER]`, check callers with
`check_api_key` (people) or `manager.auth.check_request` (delegates), answer with
`envelope.ok(...)` / raise `envelope.ApiError`, and add the function to `ROUTES` below. That tuple is
the only place routes are registered (e.g. the ECS task-spec download at
`GET /api/setup/delegates/ecs-task-spec`, or a storage area for published delegate versions).

`ManagerServer` runs the app inside the caller's event loop (`web.AppRunner`, no signal handling of
its own) together with the one periodic job, `manager.ticker`; tests use it directly, `cli.py`
wraps it with signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import ssl
import tempfile
from collections.abc import Callable

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from manager import (
    agent_api,
    keys_api,
    login,
    pages,
    profiles,
    setup_api,
    storage,
    stream,
    taskspec,
    tokens_api,
)
from manager.core import MANAGER, Manager
from manager.db import Account, DatabaseUnavailable
from manager.envelope import CLIENT_MAX_SIZE, error_middleware
from manager.settings import ManagerSettings

log = structlog.get_logger("manager")

ROUTES: tuple[Callable[[web.Application], None], ...] = (
    agent_api.add_routes,
    stream.add_routes,
    profiles.add_routes,
    setup_api.add_routes,
    pages.add_routes,
    storage.add_routes,
    taskspec.add_routes,
    tokens_api.add_routes,
    login.add_routes,
    keys_api.add_routes,
)

SHUTDOWN_TIMEOUT_S = 5.0
LISTEN_TIMEOUT_S = 20.0


@web.middleware
async def forwarded_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Behind a trusted TLS-terminating load balancer: the caller's scheme and address."""
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    remote = request.headers.get("X-Forwarded-For", "").split(",")[0].strip()
    changes: dict[str, str] = {}
    if proto in ("http", "https"):
        changes["scheme"] = proto
    if remote:
        changes["remote"] = remote
    return await handler(request.clone(**changes) if changes else request)  # type: ignore[arg-type]


def build_app(manager: Manager) -> web.Application:
    middlewares: list[Middleware] = [error_middleware, login.page_guard]
    if manager.settings.trust_forwarded_headers:
        middlewares.insert(0, forwarded_middleware)
    app = web.Application(middlewares=middlewares, client_max_size=CLIENT_MAX_SIZE)
    app[MANAGER] = manager
    for add_routes in ROUTES:
        add_routes(app)

    async def close_streams(_: web.Application) -> None:
        await manager.hub.close_all()

    app.on_shutdown.append(close_streams)
    return app


def ssl_context(settings: ManagerSettings) -> ssl.SSLContext | None:
    if not settings.tls:
        return None
    assert settings.tls_cert_file is not None and settings.tls_key_file is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


def write_env(settings: ManagerSettings, account: Account, port: int) -> None:
    """`DATA_DIR/delegate.env`, written atomically so a reader never sees half of it."""
    text = (
        f"ACCOUNT_ID={account.account_id}\n"
        f"DELEGATE_TOKEN={account.delegate_token}\n"
        f"MANAGER_HOST_AND_PORT={settings.url_for(port)}\n"
        f"DEVSTACK_API_KEY={account.api_key}\n"
    )
    fd, tmp = tempfile.mkstemp(dir=settings.data_dir, prefix=".delegate.env.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, settings.env_path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class ManagerServer:
    """The app on a TCP port plus the periodic job, in the caller's event loop."""

    def __init__(self, settings: ManagerSettings) -> None:
        self.settings = settings
        self.manager: Manager | None = None
        self.port = 0
        self.failed = asyncio.Event()  # set if the periodic job dies: the owner should stop
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """This process on loopback (tests and the local harness call it here)."""
        return f"{'https' if self.settings.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def account(self) -> Account:
        assert self.manager is not None, "start() first"
        return self.manager.account

    async def start(self) -> None:
        settings = self.settings
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        settings.env_path.unlink(missing_ok=True)  # a stale file would point at a dead port
        self.manager = Manager(settings)
        self._runner = web.AppRunner(build_app(self.manager), handle_signals=False,
                                     shutdown_timeout=SHUTDOWN_TIMEOUT_S, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.host, settings.port, reuse_address=True,
                           ssl_context=ssl_context(settings))
        await site.start()
        server = site._server  # aiohttp exposes no public accessor for the bound port
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else settings.port
        self.manager.public_url = settings.url_for(self.port)
        self._ticker = asyncio.create_task(self._tick_forever(), name="manager.ticker")
        self._ticker.add_done_callback(self._on_ticker_done)
        if self.manager.fanout is not None:  # replicas: hear the others' events before serving
            self._listener = asyncio.create_task(
                self.manager.fanout.run(self.manager.on_replica_event), name="manager.listener")
            self._listener.add_done_callback(self._on_ticker_done)
            await asyncio.wait_for(self.manager.fanout.listening.wait(), LISTEN_TIMEOUT_S)
        write_env(settings, self.manager.account, self.port)
        log.info("manager.started", url=self.url, public_url=settings.url_for(self.port),
                 account_id=self.manager.account.account_id, data_dir=str(settings.data_dir))

    async def _tick_forever(self) -> None:
        assert self.manager is not None
        failing = False  # warn once per outage, not once per tick
        while True:
            await asyncio.sleep(self.settings.tick_s)
            try:
                await self.manager.tick()
            except (sqlite3.OperationalError, DatabaseUnavailable) as exc:  # try next tick
                if not failing:
                    log.warning("manager.tick_failed", error=str(exc))
                failing = True
            else:
                failing = False

    def _on_ticker_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("manager.ticker_died", error=repr(task.exception()))
            self.failed.set()

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.manager is not None:
            self.manager.close()
            self.manager = None
        log.info("manager.stopped")
