"""structlog set-up: JSON lines in a container, readable on a terminal, secrets scrubbed.

Events have stable names (`manager.registered`, `heartbeat.failed`, `task.acquired`) and key-value
fields; per-task context is bound with `structlog.contextvars.bind_contextvars(task_id=...)`.
The scrubber is a last line of defence: code must not log secrets in the first place, but any value
that equals a registered secret (or contains it) is replaced before it is rendered.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_secrets: set[str] = set()
_REDACTED = "[redacted]"


def register_secret(value: str | None) -> None:
    """Make the scrubber hide `value` wherever it would appear in a log line."""
    if value and len(value) >= 6:
        _secrets.add(value)


def scrub(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


def _scrub_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if not _secrets:
        return event_dict
    for key, value in list(event_dict.items()):
        if isinstance(value, str):
            event_dict[key] = scrub(value)
        elif value is not None and not isinstance(value, int | float | bool):
            text = str(value)
            cleaned = scrub(text)
            if cleaned != text:
                event_dict[key] = cleaned
    return event_dict


def configure(level: str = "INFO", fmt: str = "auto", stream: Any = None) -> None:
    """Configure structlog (and route stdlib logging through the same renderer)."""
    out = stream or sys.stdout
    json_out = fmt == "json" or (fmt == "auto" and not getattr(out, "isatty", lambda: False)())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_out
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _scrub_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    # Libraries (aiohttp, botocore) log through stdlib: keep them quiet unless asked.
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=out, format="%(name)s %(message)s")


def get(name: str | None = None) -> Any:
    return structlog.get_logger(name)
