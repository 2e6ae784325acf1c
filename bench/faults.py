"""`scripts/bench faults`: issue 10's fault table. Each case is a real rolling deploy (4 tasks,
50-100 %, scaling attached) through the manager and delegate processes on the local ECS, with its
fault made by a proxy in front of the local AWS (`devstack/faultrows.py`). Cases run one after
another, so each time is its own; the fault-free deploy of the same run is the floor."""

from __future__ import annotations

import tempfile
from pathlib import Path

from devstack.aws import server
from devstack.aws.server import LocalAws
from devstack.faultcases import MANAGER_ARGS, ORPHAN_S, Case, Outcome
from devstack.faultproxy import FaultProxy
from devstack.faultrows import ROWS, restart_manager_while_following
from devstack.procs import Manager, free_port


def _calls(o: Outcome) -> str:
    return (f"Update {o.calls['UpdateService']}, Register {o.calls['RegisterTaskDefinition']}, "
            f"Create {o.calls['CreateService']}; {sum(o.calls.values())} in all")


def _row(name: str, o: Outcome, floor: Outcome) -> str:
    status = o.status
    if name == "two-deploys":
        status = "/".join(sorted({o.status, *(t["status"] for t in o.others)}))
    scaling = "resumed" if o.scaling == [(1, 6, False)] and o.policies == ["cpu"] else f"{o.scaling}"
    return (f"| {name} | {ROWS[name].what} | {status} | {o.elapsed_s:.1f} s "
            f"({o.elapsed_s / floor.elapsed_s:.1f}x) | {_calls(o)} | {o.image}, scaling {scaling} |")


def _manager_restart(aws: LocalAws, tmp: Path) -> tuple[Outcome, float]:
    """Its own manager, behind a fault proxy, restarted mid-deploy (tests/faults/test_manager_restart)."""
    port = free_port()
    with FaultProxy(f"http://127.0.0.1:{port}") as front:
        manager = Manager(tmp / "manager-restart", *MANAGER_ARGS, "--public-url", front.url)
        manager.port = port
        with manager:
            case = Case("manager-restart", aws, manager, tmp)
            try:
                return restart_manager_while_following(case, port)
            finally:
                case.close()


def run() -> str:
    own = server._running is None
    aws = LocalAws(port=0) if own else server._running
    assert aws is not None
    if own:
        aws.start()
    try:
        with tempfile.TemporaryDirectory() as tmp, Manager(Path(tmp) / "manager", *MANAGER_ARGS) as manager:
            outcomes: dict[str, Outcome] = {}
            for name, row in ROWS.items():
                case = Case(name, aws, manager, Path(tmp), breaker=row.breaker)
                try:
                    outcomes[name] = row.run(case)
                finally:
                    case.close()
            restarted, reconnect_s = _manager_restart(aws, Path(tmp))
    finally:
        if own:
            aws.stop()
    floor = outcomes["fault-free"]
    lines = [
        f"\nfault table (manager re-queues a lost delegate's task after {ORPHAN_S:g} s; "
        "times: submit -> final result; calls: through the case's proxies)",
        "| case | fault | outcome | time (x fault-free) | API calls | service at the end |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_row(name, o, floor) for name, o in outcomes.items()]
    lines.append(f"| manager-restart | the manager (behind a fault proxy) stopped and started again on its "
                 f"data dir and port after UpdateService; stream back {reconnect_s:.2f} s after it answered "
                 f"| {restarted.status} | {restarted.elapsed_s:.1f} s "
                 f"({restarted.elapsed_s / floor.elapsed_s:.1f}x) "
                 f"| {_calls(restarted)} | {restarted.image} |")
    return "\n".join(lines)
