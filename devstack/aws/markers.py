"""Failures on demand: environment variables in a task definition (or in RunTask's container
overrides) that tell the local ECS how a task should behave. Documented in docs/local-ecs.md.

    DEVSTACK_FAIL=start        the task never starts: PENDING -> STOPPED, stopCode TaskFailedToStart
    DEVSTACK_FAIL=exit         the task starts, runs briefly, and its essential container exits
                               (exit code DEVSTACK_EXIT_CODE, default 1)
    DEVSTACK_EXIT_CODE=N       the exit code (0-255). A RunTask task always exits, with 0 unless set;
                               a service task with this marker exits too (a service task that
                               exits is a failed task, whatever the code)
    DEVSTACK_RUN_SECONDS=S     how long the task runs before it exits (RunTask tasks; and service
                               tasks marked to exit)
    DEVSTACK_UNHEALTHY_AFTER=S container health checks (with a healthCheck) fail S s after RUNNING
    DEVSTACK_ELB_UNHEALTHY=1   the task's targets are unhealthy (see devstack/aws/health.py)

A marker with a bad value makes the task fail to start with a stoppedReason that names it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

FAIL = "DEVSTACK_FAIL"
EXIT_CODE = "DEVSTACK_EXIT_CODE"
RUN_SECONDS = "DEVSTACK_RUN_SECONDS"
UNHEALTHY_AFTER = "DEVSTACK_UNHEALTHY_AFTER"  # seconds; see devstack/aws/health.py
ELB_UNHEALTHY = "DEVSTACK_ELB_UNHEALTHY"
_FAIL_VALUES = ("start", "exit")


@dataclass(frozen=True)
class Behaviour:
    """What a task will do, decided once when it is launched."""

    fail_start: bool = False
    exits: bool = False  # a service task that will exit by itself (a RunTask task always exits)
    exit_code: int | None = None  # None: the default for the kind of task
    run_s: float | None = None  # None: the timing default
    invalid: str | None = None  # why the markers could not be read; the task fails to start
    unhealthy_after_s: float | None = None  # container health checks fail this long after RUNNING
    elb_unhealthy: bool = False  # its targets are unhealthy in their target groups


def _env_pairs(entries: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    return {str(e.get("name")): str(e.get("value", "")) for e in entries or () if e.get("name")}


def collect_environment(
    container_definitions: Iterable[Mapping[str, Any]], overrides: Mapping[str, Any] | None
) -> dict[str, str]:
    """All DEVSTACK_* variables of the task's containers, with RunTask overrides applied last."""
    env: dict[str, str] = {}
    for container in container_definitions:
        env.update(_env_pairs(container.get("environment")))
    for override in (overrides or {}).get("containerOverrides") or ():
        env.update(_env_pairs(override.get("environment")))
    return {k: v for k, v in env.items() if k.startswith("DEVSTACK_")}


def parse(env: Mapping[str, str]) -> Behaviour:
    fail = env.get(FAIL, "").strip().lower()
    if fail and fail not in _FAIL_VALUES:
        return Behaviour(invalid=f"{FAIL}={env[FAIL]!r} is not one of {', '.join(_FAIL_VALUES)}")
    exit_code: int | None = None
    if EXIT_CODE in env:
        try:
            exit_code = int(env[EXIT_CODE])
        except ValueError:
            exit_code = -1
        if not 0 <= exit_code <= 255:
            return Behaviour(invalid=f"{EXIT_CODE}={env[EXIT_CODE]!r} is not an integer 0-255")
    run_s: float | None = None
    if RUN_SECONDS in env:
        try:
            run_s = float(env[RUN_SECONDS])
        except ValueError:
            run_s = -1.0
        if not run_s >= 0:
            return Behaviour(invalid=f"{RUN_SECONDS}={env[RUN_SECONDS]!r} is not seconds >= 0")
    unhealthy_after: float | None = None
    if UNHEALTHY_AFTER in env:
        try:
            unhealthy_after = float(env[UNHEALTHY_AFTER])
        except ValueError:
            unhealthy_after = -1.0
        if not unhealthy_after >= 0:
            return Behaviour(invalid=f"{UNHEALTHY_AFTER}={env[UNHEALTHY_AFTER]!r} is not seconds >= 0")
    elb = env.get(ELB_UNHEALTHY, "").strip().lower()
    if elb not in ("", "0", "1", "true", "false"):
        return Behaviour(invalid=f"{ELB_UNHEALTHY}={env[ELB_UNHEALTHY]!r} is not 1 or 0")
    if fail == "exit" and exit_code is None:
        exit_code = 1
    return Behaviour(
        fail_start=fail == "start",
        exits=fail == "exit" or exit_code is not None,
        exit_code=exit_code,
        run_s=run_s,
        unhealthy_after_s=unhealthy_after,
        elb_unhealthy=elb in ("1", "true"),
    )
