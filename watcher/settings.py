"""The watcher's one settings object, read once from the environment of the ECS task spec.

It reads the same variables as the delegate's task spec (DELEGATE_STORAGE_URL, DELEGATE_CHECK_LOCATION,
WATCHER_STORAGE_URL, WATCHER_CHECK_LOCATION, DELEGATE_WORK_DIR) plus `WATCHER_*` knobs with their unit
in the name, each declared once in `FIELDS` (variable, parser, default). A plain dataclass and
stdlib parsers rather than pydantic: the watcher must stay small in memory for the container's whole
life (docs/watcher.md). Every problem is collected into one `ConfigError` that names each bad
variable, the value's problem and the form it expects; the CLI exits with code 3 on it.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from watcher import fetch, trust

#: exit code for "bad configuration: restarting will not help" (the same contract as the delegate)
EXIT_CONFIG = 3
_DAY = 86400.0


class ConfigError(Exception):
    """The environment is wrong; the message names every bad variable."""


@dataclass(frozen=True)
class Settings:
    work_dir: Path
    delegate_command: tuple[str, ...]
    delegate_storage_url: str | None
    delegate_check_location: str
    watcher_storage_url: str | None
    watcher_check_location: str
    trusted_keys: tuple[bytes, ...]  # Ed25519 public keys; empty: upgrades are refused
    heartbeat_interval_s: float  # how often both sides write their heartbeat
    heartbeat_timeout_s: float  # a delegate silent this long is hung: killed and restarted
    start_timeout_s: float  # a new process must say delegate-started within this
    ready_timeout_s: float  # an upgraded (or replacement) process must be registered within this
    drain_budget_s: float  # keep below ECS's stopTimeout (30 s by default)
    upgrade_drain_budget_s: float  # how long an old version may finish its tasks after an upgrade
    backoff_initial_s: float
    backoff_max_s: float
    start_retries: int  # failed starts in a row before FATAL
    memory_limit_mib: float  # 0 = off; above it the delegate is replaced gracefully
    upgrade_first_check_s: float
    upgrade_check_interval_s: float
    upgrade_check_jitter_s: float
    download_timeout_s: float  # total, per check-file read and per artifact download
    proxy: fetch.Proxy  # PROXY_* / HTTPS_PROXY and NO_PROXY, as the delegate reads them
    tick_s: float
    log_level: str
    log_format: str

    @property
    def channel_dir(self) -> Path:
        return self.work_dir / "msg"

    @property
    def versions_dir(self) -> Path:
        return self.work_dir / "versions"


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an https URL such as https://storage.example.com/delegates")
    if not fetch.allowed(value):
        raise ValueError("must be https (plain http only to a loopback address, for development)")
    return value.rstrip("/")


def _check_location(value: str) -> str:
    value = value.lstrip("/")
    if not value or ".." in value.split("/") or "://" in value:
        raise ValueError("expected a relative path such as delegateprod.txt")
    return value


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"expected a number of seconds, got {value[:40]!r}") from None
        if not math.isfinite(number) or not low <= number <= high:
            raise ValueError(f"{value[:40]!r} is out of range: expected {low:g} to {high:g} seconds")
        return number
    return parse


def _mib(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"expected a number of MiB, got {value[:40]!r}") from None
    if not math.isfinite(number) or not 0 <= number <= 1 << 20:
        raise ValueError(f"{value[:40]!r} is out of range: expected 0 (off) to {1 << 20} MiB")
    return number


def _retries(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 1000:
        raise ValueError(f"expected a whole number from 1 to 1000, got {value[:40]!r}")
    return int(value)


def _command(value: str) -> tuple[str, ...]:
    argv = tuple(shlex.split(value))
    if not argv:
        raise ValueError("expected a command line such as 'python -P -m delegate'")
    return argv


def _choice(*options: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value.lower() not in options:
            raise ValueError(f"got {value[:40]!r}, expected one of {', '.join(options)}")
        return value.lower()
    return parse


def _keys(value: str) -> tuple[bytes, ...]:
    keys = trust.parse_keys(value)
    if not keys:
        raise ValueError("expected base64 Ed25519 public keys separated by commas")
    return keys


# (variable, Settings field, parser, default); docs/watcher.md documents each variable
FIELDS: tuple[tuple[str, str, Callable[[str], Any], Any], ...] = (
    ("WATCHER_DELEGATE_COMMAND", "delegate_command", _command, (sys.executable, "-P", "-m", "delegate")),
    ("DELEGATE_STORAGE_URL", "delegate_storage_url", _url, None),
    ("DELEGATE_CHECK_LOCATION", "delegate_check_location", _check_location, "delegateprod.txt"),
    ("WATCHER_STORAGE_URL", "watcher_storage_url", _url, None),
    ("WATCHER_CHECK_LOCATION", "watcher_check_location", _check_location, "watcherprod.txt"),
    ("WATCHER_TRUSTED_KEYS", "trusted_keys", _keys, None),
    ("WATCHER_HEARTBEAT_INTERVAL_S", "heartbeat_interval_s", _seconds(0.05, 3600), 10.0),
    ("WATCHER_HEARTBEAT_TIMEOUT_S", "heartbeat_timeout_s", _seconds(0.1, _DAY), 60.0),
    ("WATCHER_START_TIMEOUT_S", "start_timeout_s", _seconds(0.1, _DAY), 60.0),
    ("WATCHER_READY_TIMEOUT_S", "ready_timeout_s", _seconds(0.1, _DAY), 60.0),
    ("WATCHER_DRAIN_BUDGET_S", "drain_budget_s", _seconds(0.1, _DAY), 25.0),
    ("WATCHER_UPGRADE_DRAIN_BUDGET_S", "upgrade_drain_budget_s", _seconds(0.1, 7 * _DAY), 3600.0),
    ("WATCHER_BACKOFF_INITIAL_S", "backoff_initial_s", _seconds(0, 3600), 0.2),
    ("WATCHER_BACKOFF_MAX_S", "backoff_max_s", _seconds(0.01, _DAY), 30.0),
    ("WATCHER_START_RETRIES", "start_retries", _retries, 5),
    ("WATCHER_DELEGATE_MEMORY_LIMIT_MIB", "memory_limit_mib", _mib, 0.0),
    ("WATCHER_UPGRADE_FIRST_CHECK_S", "upgrade_first_check_s", _seconds(0, 7 * _DAY), 15.0),
    ("WATCHER_UPGRADE_CHECK_INTERVAL_S", "upgrade_check_interval_s", _seconds(0.1, 7 * _DAY), 1500.0),
    ("WATCHER_UPGRADE_CHECK_JITTER_S", "upgrade_check_jitter_s", _seconds(0, 7 * _DAY), 300.0),
    ("WATCHER_DOWNLOAD_TIMEOUT_S", "download_timeout_s", _seconds(0.1, _DAY), 120.0),
    ("WATCHER_TICK_S", "tick_s", _seconds(0.01, 10), 0.25),
    ("LOG_LEVEL", "log_level", _choice("debug", "info", "warning", "error"), "info"),
    ("LOG_FORMAT", "log_format", _choice("auto", "json", "console"), "auto"),
)
PROXY_VARIABLES = ("PROXY_HOST", "PROXY_PORT", "PROXY_SCHEME", "PROXY_USER", "PROXY_PASSWORD",
                   "HTTPS_PROXY", "NO_PROXY")
VARIABLES = ("WATCHER_WORK_DIR", "DELEGATE_WORK_DIR", *(name for name, *_ in FIELDS), *PROXY_VARIABLES)


def _proxy(env: Mapping[str, str], problems: list[str]) -> fetch.Proxy:
    """The delegate's proxy settings (docs/operations.md): PROXY_* first, else HTTPS_PROXY. No value
    of PROXY_USER/PROXY_PASSWORD/HTTPS_PROXY ever reaches a message."""
    def get(name: str) -> str:
        return (env.get(name) or env.get(name.lower()) or "").strip()
    no_proxy = get("NO_PROXY") or None
    host = get("PROXY_HOST")
    if not host:
        url = get("HTTPS_PROXY")
        if url and urlsplit(url).scheme not in ("http", "https"):
            problems.append("HTTPS_PROXY: expected an http(s) URL such as http://proxy.example.com:3128")
            url = ""
        return fetch.Proxy(url or None, no_proxy)
    scheme = get("PROXY_SCHEME").lower() or "http"
    if scheme not in ("http", "https"):
        problems.append(f"PROXY_SCHEME: got {scheme[:20]!r}, expected http or https")
    port = get("PROXY_PORT")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        problems.append(f"PROXY_PORT: got {port[:20]!r}, expected a port number from 1 to 65535")
    auth = ""
    if user := get("PROXY_USER"):
        auth = f"{quote(user, safe='')}:{get('PROXY_PASSWORD')}@"  # the password comes URL-encoded
    return fetch.Proxy(f"{scheme}://{auth}{host}{':' + port if port else ''}", no_proxy)


def load(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    problems: list[str] = []
    values: dict[str, Any] = {}
    for name, attr, parse, default in FIELDS:
        raw = env.get(name, "").strip()
        values[attr] = default
        if raw:
            try:
                values[attr] = parse(raw)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
    if values["trusted_keys"] is None:
        values["trusted_keys"] = trust.image_keys()
    work = env.get("WATCHER_WORK_DIR") or env.get("DELEGATE_WORK_DIR") or os.getcwd()
    s = Settings(work_dir=Path(work), proxy=_proxy(env, problems), **values)
    if s.heartbeat_interval_s * 2 > s.heartbeat_timeout_s:
        problems.append(
            f"WATCHER_HEARTBEAT_TIMEOUT_S ({s.heartbeat_timeout_s:g}) must be at least twice "
            f"WATCHER_HEARTBEAT_INTERVAL_S ({s.heartbeat_interval_s:g}), or a healthy delegate "
            "would be killed as hung")
    if s.upgrade_check_jitter_s >= s.upgrade_check_interval_s:
        problems.append("WATCHER_UPGRADE_CHECK_JITTER_S must be below WATCHER_UPGRADE_CHECK_INTERVAL_S")
    if s.backoff_initial_s > s.backoff_max_s:
        problems.append("WATCHER_BACKOFF_INITIAL_S must not be above WATCHER_BACKOFF_MAX_S")
    if problems:
        raise ConfigError("invalid watcher configuration: " + "; ".join(problems))
    return s
