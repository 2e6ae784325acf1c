"""structlog set-up: JSON lines in a container, readable on a terminal, secrets scrubbed.

Every line, the libraries' included, carries pid, version and the instance id (`configure(context=)`).

Events have stable names (`manager.registered`, `heartbeat.failed`, `task.acquired`) and key-value
fields; per-task context is bound with `structlog.contextvars.bind_contextvars(task_id=...)`.
The scrubber is a last line of defence: code must not log secrets in the first place, but any value
that equals a registered secret (or contains it) is replaced before it is rendered.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
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


def configure(level: str = "INFO", fmt: str = "auto", stream: Any = None,
              context: Mapping[str, Any] | None = None) -> None:
    """Configure structlog, and route stdlib logging (aiohttp, botocore) through the same
    processors and renderer, so every line is JSON in a container. `context` (pid, version,
    instance id) is added to every line: during an upgrade the watcher and two delegates share
    one stdout, and these tell their lines apart."""
    out = stream or sys.stdout
    json_out = fmt == "json" or (fmt == "auto" and not getattr(out, "isatty", lambda: False)())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_out
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    numeric = logging.getLevelName(level.upper())
    fixed = dict(context or {})

    def add_context(
        _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in fixed.items():
            event_dict.setdefault(key, value)
        return event_dict

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_context,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, _scrub_processor, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    # Libraries log through stdlib: same fields and renderer, quiet unless they warn.
    handler = logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, _scrub_processor, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))


def get(name: str | None = None) -> Any:
    return structlog.get_logger(name)
