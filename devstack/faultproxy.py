"""A small HTTP fault proxy in front of the local AWS (or the manager: websockets pass through):
freeze, refuse, delay, fail, throttle, and run an action (kill a process) when a given call passes.
For the fault suite and its benchmark.

    proxy = FaultProxy(aws.endpoint_url).start()      # its own thread and event loop
    env AWS_ENDPOINT_URL=proxy.url                    # the delegate talks to AWS through it
    proxy.on_call("UpdateService", lambda: delegate.send(signal.SIGKILL))
    proxy.refuse(); ...; proxy.accept()               # connection refused (and open ones dropped)
    proxy.freeze(); ...; proxy.thaw()                 # requests held, then forwarded in order
    proxy.throttle("DescribeServices", times=6)       # answered ThrottlingException by the proxy
    proxy.calls["UpdateService"]                      # requests that reached AWS through it

An operation is the last part of `X-Amz-Target` (JSON protocols: ECS, Application Auto Scaling) or
the `Action` parameter (query protocols). `calls` counts requests forwarded to AWS (so a request
answered by the proxy itself, or dropped, is not counted); `seen` counts every request that arrived.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}
_WS_HOP = _HOP | {"upgrade", "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                  "sec-websocket-accept"}


@dataclass
class _Rule:
    operation: str
    times: int
    status: int = 400
    code: str = "ThrottlingException"
    action: Callable[[], Any] | None = None


def operation_of(headers: Any, body: bytes, query: str) -> str:
    target = headers.get("X-Amz-Target", "")
    if target:
        return str(target).rsplit(".", 1)[-1]
    for text in (query, body.decode(errors="replace")):
        action = urllib.parse.parse_qs(text).get("Action", [""])[0]
        if action:
            return action
    return ""


class FaultProxy:
    def __init__(self, upstream: str, host: str = "127.0.0.1") -> None:
        self.upstream = upstream.rstrip("/")
        self.host = host
        self.port = 0
        self.calls: Counter[str] = Counter()
        self.seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._delay_s = 0.0
        self._refusing = False
        self._loop = asyncio.new_event_loop()
        self._thawed = asyncio.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- life ----------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._run(self._start())
        return self

    def stop(self) -> None:
        self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self, coro: Any) -> Any:
        if threading.current_thread() is self._thread:  # from an action: do not wait on ourselves
            return self._loop.create_task(coro)
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(15)

    async def _start(self) -> None:
        self._thawed.set()
        self._session = aiohttp.ClientSession(auto_decompress=False,
                                              timeout=aiohttp.ClientTimeout(total=120))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await self._site.start()
        if not self.port:
            server: Any = self._site._server
            self.port = int(server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        self._thawed.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # --- faults (any thread) -------------------------------------------------------------------

    def freeze(self) -> None:
        self._loop.call_soon_threadsafe(self._thawed.clear)

    def thaw(self) -> None:
        self._loop.call_soon_threadsafe(self._thawed.set)

    def refuse(self) -> None:
        """Close the listening socket (new connections are refused) and drop open ones on use."""
        self._refusing = True
        if self._site is not None:
            self._run(self._site.stop())

    def accept(self) -> None:
        self._refusing = False
        self._run(self._listen())

    def delay(self, seconds: float) -> None:
        self._delay_s = seconds

    def throttle(self, operation: str, times: int, code: str = "ThrottlingException",
                 status: int = 400) -> None:
        """The next `times` calls of `operation` are answered with an AWS error by the proxy."""
        with self._lock:
            self._rules.append(_Rule(operation, times, status, code))

    def on_call(self, operation: str, action: Callable[[], Any], times: int = 1) -> None:
        """Run `action` when AWS has answered a call of `operation`, before the answer goes back."""
        with self._lock:
            self._rules.append(_Rule(operation, times, action=action))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
        self._delay_s = 0.0
        self.thaw()

    def _take(self, operation: str) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.operation == operation:
                    rule.times -= 1
                    if rule.times <= 0:
                        self._rules.remove(rule)
                    return rule
        return None

    # --- the proxy -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        operation = operation_of(request.headers, body, request.query_string)
        with self._lock:
            self.seen[operation] += 1
        await self._thawed.wait()
        if self._delay_s:
            await asyncio.sleep(self._delay_s)
        if self._refusing and request.transport is not None:
            request.transport.close()  # a dropped connection, as a host going away looks
            return web.Response(status=502)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        rule = self._take(operation)
        if rule is not None and rule.action is None:
            text = json.dumps({"__type": rule.code, "message": f"fault proxy: {rule.code}"})
            return web.Response(status=rule.status, text=text, content_type="application/x-amz-json-1.1",
                                headers={"x-amzn-RequestId": f"proxy-{time.monotonic_ns()}"})
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        try:
            async with self._session.request(request.method, self.upstream + request.path_qs,
                                             headers=headers, data=body) as upstream:
                payload = await upstream.read()
                with self._lock:
                    self.calls[operation] += 1
                answer = web.Response(status=upstream.status, body=payload, headers={
                    k: v for k, v in upstream.headers.items() if k.lower() not in _HOP})
        except aiohttp.ClientError as exc:  # the upstream is down (a manager restarting)
            return web.Response(status=502, text=f"fault proxy: upstream unreachable: {exc}")
        if rule is not None and rule.action is not None:
            rule.action()
            await asyncio.sleep(0.5)  # a killed process is gone before its answer could arrive
        await self._thawed.wait()  # frozen meanwhile (the action may freeze): the answer waits too
        return answer

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        """Pass a websocket through, both ways, until either side closes (a restarted upstream
        closes it, as a real one going away would)."""
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _WS_HOP}
        url = self.upstream.replace("http", "ws", 1) + request.path_qs
        try:
            upstream = await self._session.ws_connect(url, headers=headers, autoping=False)
        except aiohttp.WSServerHandshakeError as exc:
            return web.Response(status=exc.status, text=exc.message)
        except aiohttp.ClientError as exc:
            return web.Response(status=502, text=str(exc))
        down = web.WebSocketResponse(autoping=False)
        await down.prepare(request)

        async def pump(src: Any, dst: Any) -> None:
            async for msg in src:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await dst.send_str(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await dst.send_bytes(msg.data)
                elif msg.type == aiohttp.WSMsgType.PING:
                    await dst.ping(msg.data)
                elif msg.type == aiohttp.WSMsgType.PONG:
                    await dst.pong(msg.data)
            await dst.close()

        async with upstream:
            pumps = [asyncio.ensure_future(pump(down, upstream)), asyncio.ensure_future(pump(upstream, down))]
            _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        await down.close()
        return down
