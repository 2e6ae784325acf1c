"""Issue 2: time from process start to registered, and idle resident memory (median of 5)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from bench.common import median, pss_mib, rss_mib, table
from devstack.procs import REPO, Manager, Process, delegate_env

RUNS = 5
IDLE_S = 30.0


def run() -> str:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        base = Path(tmp)
        with Manager(base / "manager") as manager:
            return _measure(manager, base)


def _start(manager: Manager, work: Path) -> Process:
    work.mkdir(parents=True, exist_ok=True)
    env = delegate_env(manager, work, DELEGATE_HEARTBEAT_INTERVAL_S="10",
                       DELEGATE_KEEPALIVE_INTERVAL_S="20")
    return Process([sys.executable, "-m", "delegate"], env, REPO).start()


def _measure(manager: Manager, base: Path) -> str:
    to_registered: list[float] = []
    in_process: list[float] = []
    for i in range(RUNS):
        t0 = time.perf_counter()
        proc = _start(manager, base / f"start{i}")
        event = proc.wait_event("manager.registered", timeout=30)
        to_registered.append(time.perf_counter() - t0)
        in_process.append(float(proc.wait_event("agent.ready")["seconds"]))
        del event
        proc.stop()
    idle = [_start(manager, base / f"idle{i}") for i in range(RUNS)]
    for proc in idle:
        proc.wait_event("manager.registered", timeout=30)
    time.sleep(IDLE_S)
    rss = [rss_mib(p.pid) for p in idle]
    pss = [pss_mib(p.pid) for p in idle]
    for proc in idle:
        proc.stop()
    rows = [
        ("process start -> registered (median of 5)", f"{median(to_registered) * 1000:.0f} ms",
         "target < 800 ms; Harness: minutes"),
        ("  of which agent start -> registered", f"{median(in_process) * 1000:.0f} ms",
         "the rest is interpreter + imports"),
        (f"idle resident memory after {IDLE_S:.0f}s (RSS, median of 5)", f"{median(rss):.1f} MiB",
         "target < 50 MiB; Harness reserves 6144 MiB"),
        ("idle proportional memory (PSS, median of 5)", f"{median(pss):.1f} MiB",
         "shared library pages split among the 5"),
    ]
    return table("Delegate start and idle memory", rows)
