"""The watcher's one settings object, read once from the environment of the ECS task spec.

It reads the same variables as the delegate's task spec (DELEGATE_STORAGE_URL, DELEGATE_CHECK_LOCATION,
WATCHER_STORAGE_URL, WATCHER_CHECK_LOCATION, DELEGATE_WORK_DIR) plus `WATCHER_*` knobs with their unit
in the name. Plain dataclass and hand-written checks rather than pydantic: the watcher must stay small
in memory for the container's whole life. Every problem is collected into one `ConfigError` that names
each bad variable and the form it expects; the CLI exits with code 3 on it.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

#: exit code for "bad configuration: restarting will not help" (the same contract as the delegate)
EXIT_CONFIG = 3

T = TypeVar("T")


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
    download_timeout_s: float
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
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https", "file") or not (parts.netloc or parts.scheme == "file"):
        raise ValueError("expected an http(s) URL such as https://storage.example.com/delegates")
    return value.strip().rstrip("/")


def _check_location(value: str) -> str:
    value = value.strip().lstrip("/")
    if not value or ".." in value.split("/"):
        raise ValueError("expected a relative path such as delegateprod.txt")
    return value


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("must be a number of seconds above 0")
    return number


def _non_negative(value: str) -> float:
    number = float(value)
    if number < 0:
        raise ValueError("must be 0 or more")
    return number


def _retries(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be a whole number of 1 or more")
    return number


def _command(value: str) -> tuple[str, ...]:
    argv = tuple(shlex.split(value))
    if not argv:
        raise ValueError("expected a command line such as 'python -m delegate'")
    return argv


def _level(value: str) -> str:
    if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("expected one of DEBUG, INFO, WARNING, ERROR")
    return value.upper()


def _fmt(value: str) -> str:
    if value.lower() not in ("auto", "json", "console"):
        raise ValueError("expected one of auto, json, console")
    return value.lower()


def load(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    problems: list[str] = []

    def get(name: str, parse: Callable[[str], T], default: T, hint: str = "") -> T:
        raw = env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except ValueError as exc:
            reason = str(exc) if hint == "" else hint
            if reason.startswith(("could not convert", "invalid literal")):
                reason = "expected a number"
            problems.append(f"{name}: {reason}")
            return default

    work = env.get("WATCHER_WORK_DIR") or env.get("DELEGATE_WORK_DIR") or os.getcwd()
    default_cmd = (sys.executable, "-m", "delegate")
    s = Settings(
        work_dir=Path(work),
        delegate_command=get("WATCHER_DELEGATE_COMMAND", _command, default_cmd),
        delegate_storage_url=get("DELEGATE_STORAGE_URL", _url, None),
        delegate_check_location=get("DELEGATE_CHECK_LOCATION", _check_location, "delegateprod.txt"),
        watcher_storage_url=get("WATCHER_STORAGE_URL", _url, None),
        watcher_check_location=get("WATCHER_CHECK_LOCATION", _check_location, "watcherprod.txt"),
        heartbeat_interval_s=get("WATCHER_HEARTBEAT_INTERVAL_S", _positive, 10.0),
        heartbeat_timeout_s=get("WATCHER_HEARTBEAT_TIMEOUT_S", _positive, 60.0),
        start_timeout_s=get("WATCHER_START_TIMEOUT_S", _positive, 60.0),
        ready_timeout_s=get("WATCHER_READY_TIMEOUT_S", _positive, 60.0),
        drain_budget_s=get("WATCHER_DRAIN_BUDGET_S", _positive, 25.0),
        upgrade_drain_budget_s=get("WATCHER_UPGRADE_DRAIN_BUDGET_S", _positive, 3600.0),
        backoff_initial_s=get("WATCHER_BACKOFF_INITIAL_S", _non_negative, 0.2),
        backoff_max_s=get("WATCHER_BACKOFF_MAX_S", _positive, 30.0),
        start_retries=get("WATCHER_START_RETRIES", _retries, 5),
        memory_limit_mib=get("WATCHER_DELEGATE_MEMORY_LIMIT_MIB", _non_negative, 0.0),
        upgrade_first_check_s=get("WATCHER_UPGRADE_FIRST_CHECK_S", _non_negative, 15.0),
        upgrade_check_interval_s=get("WATCHER_UPGRADE_CHECK_INTERVAL_S", _positive, 1500.0),
        upgrade_check_jitter_s=get("WATCHER_UPGRADE_CHECK_JITTER_S", _non_negative, 300.0),
        download_timeout_s=get("WATCHER_DOWNLOAD_TIMEOUT_S", _positive, 120.0),
        tick_s=get("WATCHER_TICK_S", _positive, 0.25),
        log_level=get("LOG_LEVEL", _level, "INFO"),
        log_format=get("LOG_FORMAT", _fmt, "auto"),
    )
    if s.heartbeat_interval_s * 2 > s.heartbeat_timeout_s:
        problems.append(
            f"WATCHER_HEARTBEAT_TIMEOUT_S ({s.heartbeat_timeout_s:g}) must be at least twice "
            f"WATCHER_HEARTBEAT_INTERVAL_S ({s.heartbeat_interval_s:g}), or a healthy delegate "
            "would be killed as hung")
    if s.upgrade_check_jitter_s >= s.upgrade_check_interval_s:
        problems.append("WATCHER_UPGRADE_CHECK_JITTER_S must be below WATCHER_UPGRADE_CHECK_INTERVAL_S")
    if problems:
        raise ConfigError("invalid watcher configuration: " + "; ".join(problems))
    return s
