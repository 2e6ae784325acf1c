"""The delegate websocket: `GET /stream/delegate/{accountId}?delegateId=...`.

Authentication (the JWE in the `Authorization` header, never in the URL), the delegate lookup and
its connection credential (`delegateConnectionId` header) are checked before the upgrade (401, 404,
403 or 409 as plain envelopes), so a caller without them never holds a socket. After the upgrade
the delegate sends `DelegateHeartbeat` frames and gets one `DelegateHeartbeatResponseStreaming`
for each; the manager pushes task and abort events (`Manager.dispatcher`, `Manager.abort`). On
connect it replays what the delegate may have missed while it was away (queued tasks it may take,
aborts of its tasks).
"""

from __future__ import annotations

import json

import structlog
from aiohttp import WSMsgType, web
from pydantic import ValidationError

from manager import db
from manager.core import MANAGER, Manager
from manager.envelope import ApiError
from protocol.wire import DelegateHeartbeatResponseStreaming, StreamHeartbeat

log = structlog.get_logger("manager")

HEARTBEAT_TIMEOUT_S = 10.0


async def stream(request: web.Request) -> web.StreamResponse:
    manager = request.app[MANAGER]
    manager.auth.check_request(request)
    delegate_id = request.query.get("delegateId", "")
    rec = manager.delegates.require(delegate_id)
    manager.connections.check_current(request, delegate_id)
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_TIMEOUT_S * 3, max_msg_size=4 * 1024 * 1024)
    await ws.prepare(request)
    manager.hub.add(delegate_id, ws)
    rec.stream_closed_at = None
    manager.delegates.touch(rec, db.now_ms())
    log.info("stream.connected", delegate_id=delegate_id, sockets=manager.hub.count())
    try:
        for event in manager.pending_events(rec):
            await ws.send_str(json.dumps(event, separators=(",", ":")))
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await _on_text(manager, ws, delegate_id, msg.data)
            elif msg.type == WSMsgType.ERROR:
                log.info("stream.error", delegate_id=delegate_id, error=str(ws.exception()))
    finally:
        manager.hub.remove(delegate_id, ws)
        if not manager.hub.has(delegate_id):
            rec.stream_closed_at = db.now_ms()  # DISCONNECTED soon unless it comes back
        log.info("stream.closed", delegate_id=delegate_id)
    return ws


async def _on_text(manager: Manager, ws: web.WebSocketResponse, delegate_id: str,
                   text: str) -> None:
    try:
        frame = json.loads(text)
    except ValueError:
        log.info("stream.bad_frame", delegate_id=delegate_id, problem="not JSON")
        return
    event_type = frame.get("eventType") if isinstance(frame, dict) else None
    if event_type != "DelegateHeartbeat":
        log.info("stream.unknown_event", delegate_id=delegate_id, event_type=str(event_type))
        return
    try:
        params = StreamHeartbeat.model_validate(frame)
    except ValidationError as exc:
        log.info("stream.bad_heartbeat", delegate_id=delegate_id, errors=exc.error_count())
        return
    params.delegate_id = params.delegate_id or delegate_id
    try:
        rec = manager.heartbeat(params)
    except ApiError as exc:
        log.info("stream.heartbeat_refused", delegate_id=delegate_id, code=exc.code)
        await ws.close(message=exc.message.encode()[:120])
        return
    answer = DelegateHeartbeatResponseStreaming(
        delegate_id=rec.delegate_id, delegate_random_token=rec.random_token,
        sequence_number=str(rec.seq) if rec.seq is not None else None,
        response_sent_at=db.now_ms())
    await ws.send_str(json.dumps(answer.dump(), separators=(",", ":")))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/stream/delegate/{accountId}", stream)
