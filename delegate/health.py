"""`/health` and `/metrics` on DELEGATE_HEALTH_PORT (8080, the port the task spec maps).

/health is 200 only while the delegate is registered and a heartbeat was acknowledged recently, so
that the container HEALTHCHECK and the watcher see a delegate that is up but cut off as unhealthy.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from delegate import log
from delegate.metrics import Metrics

_log = log.get("delegate.health")


class HealthServer:
    def __init__(
        self, port: int, metrics: Metrics, check: Callable[[], tuple[bool, str]], host: str = "0.0.0.0"  # noqa: S104 - the task spec maps this port
    ) -> None:
        self._port = port
        self._host = host
        self._metrics = metrics
        self._check = check
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics_page)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        # reuse_port: during a watcher upgrade the old and the new process both serve this port.
        site = web.TCPSite(self._runner, self._host, self._port, shutdown_timeout=1.0,
                           reuse_port=self._port != 0)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self._port
        _log.info("health.listening", port=self.bound_port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _health(self, _request: web.Request) -> web.Response:
        ok, reason = self._check()
        return web.json_response(
            {"status": "UP" if ok else "DOWN", "reason": reason}, status=200 if ok else 503
        )

    async def _metrics_page(self, _request: web.Request) -> web.Response:
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
