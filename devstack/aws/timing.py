"""How fast the local ECS moves: every delay the scheduler uses, in seconds.

Defaults are chosen so that a rolling update of a few tasks completes in about a second or two on a
loaded 2-core machine; real ECS takes minutes. Tests and the demo want speed, a person watching a
rollout in a terminal may want it slower (`devstack aws --task-start-s 5`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Timing:
    # How often the scheduler wakes up to move tasks and deployments along.
    tick_s: float = 0.1
    # PROVISIONING -> PENDING -> RUNNING (half the time in each), or -> STOPPED for a task that
    # never starts.
    task_start_s: float = 0.5
    # How long a task the scheduler stops spends draining (deregistered from its target groups,
    # DEACTIVATING) before it is STOPPED.
    task_stop_s: float = 0.3
    # How long a RunTask task runs before it exits, unless its DEVSTACK_RUN_SECONDS says otherwise.
    run_task_s: float = 1.0
    # How long a service task marked to exit (DEVSTACK_FAIL=exit or DEVSTACK_EXIT_CODE) runs first.
    fail_after_s: float = 0.5
    # How long a service must stay steady (only the PRIMARY's tasks, all RUNNING) before its
    # deployment is COMPLETED; longer than fail_after_s so tasks that crash soon fail the rollout.
    steady_after_s: float = 1.0
    # How long one "minute" of a native deployment's bake times and hook timeouts lasts here
    # (bakeTimeInMinutes: 2 bakes 2 x minute_s seconds).
    minute_s: float = 1.0
    # How long STOPPED tasks stay describable before they are forgotten (ECS: about an hour).
    stopped_task_ttl_s: float = 3600.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"timing {f.name}={value!r}: give a number of seconds >= 0")
        if self.tick_s <= 0:
            raise ValueError(f"timing tick_s={self.tick_s!r}: give a number of seconds > 0")
