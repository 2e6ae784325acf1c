"""Open delegate websockets by delegate id, so broadcasting is a dict lookup and a send."""

from __future__ import annotations

import json
from typing import Any

import structlog
from aiohttp import WSCloseCode, web

log = structlog.get_logger("manager")


class StreamHub:
    def __init__(self) -> None:
        self._sockets: dict[str, set[web.WebSocketResponse]] = {}

    def has(self, delegate_id: str) -> bool:
        return bool(self._sockets.get(delegate_id))

    def add(self, delegate_id: str, ws: web.WebSocketResponse) -> None:
        self._sockets.setdefault(delegate_id, set()).add(ws)

    def remove(self, delegate_id: str, ws: web.WebSocketResponse) -> None:
        sockets = self._sockets.get(delegate_id)
        if sockets is not None:
            sockets.discard(ws)
            if not sockets:
                del self._sockets[delegate_id]

    def count(self) -> int:
        return sum(len(s) for s in self._sockets.values())

    async def send(self, delegate_id: str, event: dict[str, Any]) -> int:
        """Send one event to every socket of a delegate; returns how many took it."""
        return await self.send_text(delegate_id, json.dumps(event, separators=(",", ":")))

    async def send_text(self, delegate_id: str, text: str) -> int:
        """A frame as it is: the real manager's plain-string messages (`REVOKED_TOKEN`, ...)."""
        sent = 0
        for ws in list(self._sockets.get(delegate_id, ())):
            if ws.closed:
                self.remove(delegate_id, ws)
                continue
            try:
                await ws.send_str(text)
                sent += 1
            except (ConnectionError, RuntimeError) as exc:
                log.info("stream.send_failed", delegate_id=delegate_id, error=type(exc).__name__)
                self.remove(delegate_id, ws)
        return sent

    async def close(self, delegate_id: str, message: str) -> None:
        for ws in list(self._sockets.get(delegate_id, ())):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=message.encode())
            self.remove(delegate_id, ws)

    async def close_all(self) -> None:
        for delegate_id in list(self._sockets):
            await self.close(delegate_id, "manager shutting down")
