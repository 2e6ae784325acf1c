"""structlog set-up: JSON lines in a container, readable on a terminal, secrets scrubbed.

Every line, the libraries' included, carries pid, version and the instance id (`configure(context=)`).

Events have stable names (`manager.registered`, `heartbeat.failed`, `task.acquired`) and key-value
fields; per-task context is bound with `structlog.contextvars.bind_contextvars(task_id=...)`.
The scrubber is a last line of defence: code must not log secrets in the first place, but any value
that contains a registered secret is masked before it is rendered, and so is the secret in its common
encodings: any mix of upper and lower case, and base64 (standard or URL-safe, padded or not, at any
alignment within a longer base64 text, of the text and, for a hex token, of the bytes it spells).
"""

from __future__ import annotations

import base64
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
_REDACTED = "[redacted]"
#: a base64 run shorter than this is too unspecific to mask (it would hide ordinary words)
_MIN_ENCODED = 12


def register_secret(value: str | None) -> None:
    """Make the scrubber hide `value` (and its encodings) wherever it would appear in a log line."""
    global _pattern  # the scrubber is process-wide, like the log configuration
    if not value or len(value) < 6 or value in _secrets:
        return
    _secrets.add(value)
    forms = set(_secrets)
    for secret in _secrets:
        forms |= _encodings(secret)
    alternatives = sorted((f for f in forms if len(f) >= 6), key=len, reverse=True)
    _pattern = re.compile("|".join(re.escape(f) for f in alternatives), re.IGNORECASE)


def _encodings(secret: str) -> set[str]:
    raws = [secret.encode("utf-8")]
    if re.fullmatch(r"[0-9a-fA-F]+", secret) and len(secret) % 2 == 0:
        raws += [bytes.fromhex(secret)]
    found: set[str] = set()
    for raw in raws:
        for shift in range(3):  # where the secret starts within the 3-byte groups of base64
            core = raw[shift:][: (len(raw) - shift) // 3 * 3]
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                text = encode(core).decode("ascii")
                if len(text) >= _MIN_ENCODED:
                    found.add(text)
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            found.add(encode(raw).decode("ascii").rstrip("="))
    return found


def scrub(text: str) -> str:
    if _pattern is None:
        return text
    return _pattern.sub(_REDACTED, text)


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
