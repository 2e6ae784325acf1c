"""A scripted hostile manager: the agent API on loopback, answering whatever a probe tells it to.

It speaks just enough of the protocol to keep a delegate registered (register, heartbeats over the
stream or by polling, acks), records every request it gets (raw path included), and lets a test
replace any answer (`answers[name] = handler`) or push any frame onto the stream (`push`). It runs
in a thread with its own event loop, so that tests stay plain functions driving real processes.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from tests.support import free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ACCOUNT = "hostileAcct01"
DELEGATE_ID = "hostileDelegate01"


def envelope(resource: Any, status: int = 200) -> web.Response:
    return web.json_response({"resource": resource, "responseMessages": [], "metaData": {}},
                             status=status)


@dataclass
class Seen:
    method: str
    raw_path: str
    name: str
    body: bytes
    at: float


class HostileManager:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.seen: list[Seen] = []
        self.answers: dict[str, Handler] = {}
        self.packages: dict[str, dict[str, Any]] = {}
        self.heartbeats = 0
        self.sockets: list[web.WebSocketResponse] = []
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # --- lifecycle (from the test's thread) ----------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> HostileManager:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def env(self, work_dir: str, **extra: str) -> dict[str, str]:
        """The task spec environment of a delegate talking to this manager."""
        base = {
            "ACCOUNT_ID": ACCOUNT, "DELEGATE_TOKEN": self.token, "MANAGER_HOST_AND_PORT": self.url,
            "DELEGATE_TYPE": "ECS", "DELEGATE_GROUP_NAME": "hostile", "POLL_FOR_TASKS": "false",
            "DELEGATE_HOSTNAME": "Harness-ECS-Delegate", "DELEGATE_HEALTH_PORT": "0",
            "DELEGATE_WORK_DIR": work_dir, "DELEGATE_HEARTBEAT_INTERVAL_S": "1",
            "DELEGATE_KEEPALIVE_INTERVAL_S": "2", "DELEGATE_POLL_INTERVAL_S": "0.5",
            "DELEGATE_RESOURCE_THRESHOLD": "100", "LOG_FORMAT": "json",
        }
        base.update(extra)
        return base

    def push(self, *frames: str) -> None:
        """Send text frames on every open stream."""
        async def send() -> None:
            for _ in range(200):  # a stream the delegate has just opened may not be listed yet
                if self.sockets:
                    break
                await asyncio.sleep(0.05)
            for ws in list(self.sockets):
                for frame in frames:
                    if ws.closed:
                        break
                    await ws.send_str(frame)
        asyncio.run_coroutine_threadsafe(send(), self._loop).result(60)

    def requests(self, name: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.name == name]

    def beats_since(self, t: float) -> int:
        """Heartbeats (stream, polling or keep-alive) received after monotonic time `t`."""
        with self._lock:
            return sum(1 for s in self.seen if s.name in ("heartbeat", "keepalive") and s.at > t)

    # --- the server ----------------------------------------------------------------------------

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        api = "/api/agent"
        app.router.add_post(f"{api}/delegates/register", self._route("register"))
        app.router.add_post(f"{api}/delegates/unregister", self._route("unregister"))
        app.router.add_post(f"{api}/delegates/heartbeat-with-polling", self._route("heartbeat"))
        app.router.add_get(f"{api}/delegates/{{d}}/task-events", self._route("task-events"))
        app.router.add_put(f"{api}/delegates/{{d}}/tasks/{{t}}/acquire", self._route("acquire"))
        app.router.add_post(f"{api}/delegates/{{d}}/tasks/{{t}}/logs", self._route("logs"))
        app.router.add_post(f"{api}/v2/tasks/{{t}}/delegates/{{d}}", self._route("result"))
        app.router.add_get(f"{api}/delegates/{{d}}/profile", self._route("profile"))
        app.router.add_post(f"{api}/delegateFiles/{{d}}/profile-result",
                            self._route("profile-result"))
        app.router.add_get("/stream/delegate/{a}", self._stream)
        app.router.add_route("*", "/{tail:.*}", self._route("other"))
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def _stop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _record(self, request: web.Request, name: str, body: bytes) -> None:
        with self._lock:
            self.seen.append(Seen(request.method, request.raw_path, name, body, time.monotonic()))

    def _route(self, name: str) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            if name == "register" and json.loads(body or b"{}").get("keepAlivePacket"):
                self._record(request, "keepalive", body)
            else:
                self._record(request, name, body)
            custom = self.answers.get(name)
            if custom is not None:
                return await custom(request)
            return await self._default(name, request, body)
        return handle

    async def _default(self, name: str, request: web.Request, body: bytes) -> web.StreamResponse:
        if name == "register":
            sent = json.loads(body)
            return envelope({"delegateId": DELEGATE_ID, "sequenceNum": "1",
                             "delegateRandomToken": sent.get("delegateRandomToken")})
        if name == "heartbeat":
            return envelope({"delegateId": DELEGATE_ID, "status": "ENABLED"})
        if name == "task-events":
            return envelope({"delegateTaskEvents": []})
        if name == "acquire":
            package = self.packages.get(request.match_info["t"])
            if package is None:
                return envelope(None, 409)
            instance = request.query.get("delegateInstanceId")
            return envelope({"delegateInstanceId": instance, **package})
        if name in ("logs", "result", "profile-result", "unregister"):
            return envelope({})
        if name == "profile":
            return envelope(None)
        return envelope(None, 404)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        self._record(request, "stream", b"")
        custom = self.answers.get("stream")
        if custom is not None:
            return await custom(request)
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        self.sockets.append(ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._record(request, "heartbeat", msg.data.encode())
                    ack = {"eventType": "DelegateHeartbeatResponseStreaming",
                           "delegateId": DELEGATE_ID, "status": "ENABLED",
                           "responseSentAt": int(time.time() * 1000)}
                    if "ack" not in self.answers:
                        await ws.send_str(json.dumps(ack))
        finally:
            self.sockets.remove(ws)
        return ws
