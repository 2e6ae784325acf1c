"""The manager client's guards on the wire: ids in URLs, answer sizes, redirects.

Kept apart from `client.py` so that the rules a hostile manager meets are in one short place.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ValidationError

from delegate.errors import ManagerUnavailable, ProtocolViolation
from protocol import wire

M = TypeVar("M", bound=BaseModel)

_ID = re.compile(wire.ID_PATTERN)


def segment(value: str, what: str) -> str:
    """`value` as one URL path segment: checked against the id pattern, then percent-encoded."""
    if not _ID.fullmatch(value):
        raise ProtocolViolation(
            f"{what} {value[:40]!r} is not a valid id (pattern {wire.ID_PATTERN}); not sent"
        )
    return quote(value, safe="")


def delegate_part(delegate_id: str) -> str:
    return segment(delegate_id, "delegate id")


def task_part(task_id: str) -> str:
    return segment(task_id, "task id")


def decode_envelope(endpoint: str, status: int, body: bytes) -> dict[str, Any] | None:
    if not body.strip():
        return {"resource": None} if status < 300 else None
    try:
        value = wire.parse_json(body)
    except ValueError as exc:
        if status >= 400:
            return None
        raise ProtocolViolation(
            f"{endpoint}: answer is not JSON ({str(exc)[:80]}; first bytes: {body[:40]!r})"
        ) from None
    if not isinstance(value, dict) or ("resource" not in value and status < 400):
        raise ProtocolViolation(f"{endpoint}: answer is not an envelope with 'resource'")
    return value

def resource(endpoint: str, envelope: dict[str, Any], model: type[M]) -> M:
    """The envelope's `resource` as `model`, or a ProtocolViolation naming the endpoint and field."""
    try:
        return model.model_validate(envelope.get("resource"))
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "resource"
        raise ProtocolViolation(
            f"{endpoint}: answer does not fit {model.__name__}: {where}: {first.get('msg')}"
        ) from None


def error_code(envelope: dict[str, Any] | None) -> str:
    """The error code of an error answer, cut to 64 characters (it ends up in log lines)."""
    try:
        return str(envelope["responseMessages"][0]["code"])[:64] if envelope else "UNKNOWN"
    except (KeyError, IndexError, TypeError):
        return "UNKNOWN"


def error_message(envelope: dict[str, Any] | None) -> str:
    """The message of an error answer, cut to 300 characters (it ends up in log lines)."""
    try:
        return str(envelope["responseMessages"][0]["message"])[:300] if envelope else ""
    except (KeyError, IndexError, TypeError):
        return ""


class Redirected(aiohttp.ClientError):
    """Raised from the redirect trace hook: the manager's redirects are never followed."""

    def __init__(self, status: int) -> None:
        super().__init__(f"redirect {status}")
        self.status = status


async def refuse_redirect(_session: object, _ctx: SimpleNamespace,
                           params: aiohttp.TraceRequestRedirectParams) -> None:
    raise Redirected(params.response.status)


async def read_capped(endpoint: str, resp: aiohttp.ClientResponse) -> bytes:
    """The body, or ProtocolViolation once it passes MAX_ANSWER_BYTES (announced or read)."""
    limit = wire.MAX_ANSWER_BYTES
    if resp.content_length is not None and resp.content_length > limit:
        raise ProtocolViolation(
            f"{endpoint}: answer of {resp.content_length} bytes is over the {limit} byte limit"
        )
    body = bytearray()
    async for chunk in resp.content.iter_chunked(65_536):
        body += chunk
        if len(body) > limit:
            raise ProtocolViolation(f"{endpoint}: answer is over the {limit} byte limit")
    return bytes(body)


def redirect_error(endpoint: str, status: int) -> ManagerUnavailable:
    """Transient: the call is retried under its own policy (a result is kept until the manager
    takes it), but the redirect itself is never followed."""
    return ManagerUnavailable(
        f"{endpoint}: manager answered {status} (a redirect); redirects are not followed, so that "
        "the token and bodies never go to another origin. Set MANAGER_HOST_AND_PORT to the "
        "manager's final address."
    )


def float_or_none(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
