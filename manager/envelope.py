"""The `{resource, responseMessages, metaData}` envelope, API errors, and request body parsing.

Handlers raise `ApiError` (or return `ok(...)`); `error_middleware` turns every error, including
aiohttp's own 404/405 and unexpected exceptions, into an envelope for API paths, so no caller ever
sees an HTML error page or a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from manager.db import DatabaseUnavailable
from protocol.wire import MAX_TASK_DATA_BYTES

log = structlog.get_logger("manager")

M = TypeVar("M", bound=BaseModel)

#: aiohttp must read a little more than the limit so that we can answer 413 ourselves
CLIENT_MAX_SIZE = MAX_TASK_DATA_BYTES * 4

_CODES = {
    400: "INVALID_REQUEST",
    401: "INVALID_TOKEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    410: "GONE",
    413: "PAYLOAD_TOO_LARGE",
}


class ApiError(Exception):
    """An answer other than 2xx, with its code and a message that names the input."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def ok(resource: Any = None, meta: dict[str, Any] | None = None, status: int = 200) -> web.Response:
    if isinstance(resource, BaseModel):
        resource = resource.model_dump(by_alias=True, mode="json", exclude_none=True)
    body = {"resource": resource, "responseMessages": [], "metaData": meta or {}}
    return web.Response(text=dumps(body), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str) -> web.Response:
    body: dict[str, Any] = {
        "resource": None,
        "responseMessages": [{"code": code, "level": "ERROR", "message": message}],
        "metaData": {},
    }
    return web.Response(text=dumps(body), status=status, content_type="application/json")


def _is_api(path: str) -> bool:
    return path.startswith(("/api/", "/stream/"))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except DatabaseUnavailable as exc:
        return error_response(503, "DATABASE_UNAVAILABLE",
                              f"{exc}; the manager retries by itself, try again shortly")
    except web.HTTPException as exc:
        if not _is_api(request.path) or exc.status < 400:
            raise
        code = _CODES.get(exc.status, "HTTP_ERROR")
        return error_response(exc.status, code, f"{request.method} {request.path}: {exc.reason}")
    except Exception:
        log.exception("http.unhandled", method=request.method, path=request.path)
        return error_response(500, "INTERNAL_ERROR", "the manager failed; see its log")


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        field = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"field '{field}': {err['msg']}")
    return "; ".join(parts)


async def read_json(request: web.Request) -> Any:
    """The body as JSON; 413 over `MAX_TASK_DATA_BYTES`, 400 when it is not JSON."""
    if request.content_length is not None and request.content_length > MAX_TASK_DATA_BYTES:
        raise ApiError(413, "PAYLOAD_TOO_LARGE",
                       f"body of {request.content_length} bytes is over the limit of "
                       f"{MAX_TASK_DATA_BYTES} bytes; send less")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError(413, "PAYLOAD_TOO_LARGE",
                       f"body is over the limit of {MAX_TASK_DATA_BYTES} bytes") from exc
    if len(raw) > MAX_TASK_DATA_BYTES:
        raise ApiError(413, "PAYLOAD_TOO_LARGE",
                       f"body of {len(raw)} bytes is over the limit of {MAX_TASK_DATA_BYTES} bytes")
    if not raw:
        raise ApiError(400, "INVALID_REQUEST", "the body is empty; send a JSON object")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "INVALID_REQUEST", "the body is not valid JSON") from exc


def parse_model(value: Any, model: type[M]) -> M:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ApiError(400, "INVALID_REQUEST", f"{model.__name__}: {_describe(exc)}") from exc


async def read_model(request: web.Request, model: type[M]) -> M:
    return parse_model(await read_json(request), model)
