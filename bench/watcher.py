"""Issue 6: watcher resident memory, SIGKILL of the delegate to registered again, hang detection,
and the task-acquisition gap during an upgrade. Real processes on the local stack."""

from __future__ import annotations

import itertools
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import median, pss_mib, rss_mib, table
from devstack import publish
from devstack.procs import REPO, Manager, Process, delegate_env

KILLS = 5
HANG_TIMEOUT_S = 3.0


def run() -> str:
    with tempfile.TemporaryDirectory(prefix="bench-watcher-") as tmp:
        base = Path(tmp)
        with Manager(base / "manager", "--rebroadcast-s", "1") as manager:
            return _measure(manager, base)


_IMPORTS = "import watcher.supervisor, watcher.fetch, urllib.request"
_RSS = ("import re; print(int(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read())[1]) / 1024)")


def _rss_with(extra: str) -> float:
    import subprocess
    code = f"{_IMPORTS}{extra}; {_RSS}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          timeout=60, check=True)
    return float(done.stdout.strip())


def _crypto_rows(work: Path) -> list[tuple[str, str, str]]:
    """Why signatures are checked in a short-lived process: what `cryptography` would add, and what
    a check costs at each start of an installed version."""
    from watcher import trust
    from watcher.upgrade import Store
    plain = median([_rss_with("") for _ in range(3)])
    loaded = median([_rss_with("; from cryptography.hazmat.primitives.asymmetric import ed25519")
                     for _ in range(3)])
    rows = [("watcher modules in a bare interpreter (MiB)", f"{plain:.1f}", "floor, same run"),
            ("... plus cryptography's Ed25519 in-process (MiB)", f"{loaded:.1f}",
             f"+{loaded - plain:.1f} MiB, x{loaded / plain:.2f}: why the check is a subprocess")]
    store = Store(work / "versions", "delegate", trust.parse_keys(
        (work / "trusted.txt").read_text()))
    installed = store.installed()["current"]
    if installed:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            store.load(installed).close()
            times.append(time.perf_counter() - t0)
        rows.append(("verify an installed version before a start (ms, median)",
                     f"{median(times) * 1000:.0f}", "read, sha256, sealed copy, Ed25519 subprocess"))
    return rows


def _watcher(manager: Manager, work: Path, **extra: str) -> Process:
    work.mkdir(parents=True, exist_ok=True)
    (work / "trusted.txt").write_text(publish.public_key_b64(publish.dev_key(manager.data_dir)))
    env = delegate_env(manager, work, DELEGATE_HEARTBEAT_INTERVAL_S="5",
                       WATCHER_HEARTBEAT_INTERVAL_S="1", WATCHER_HEARTBEAT_TIMEOUT_S=f"{HANG_TIMEOUT_S:g}",
                       WATCHER_DELEGATE_COMMAND=f"{sys.executable} -m delegate",
                       WATCHER_TRUSTED_KEYS=publish.public_key_b64(publish.dev_key(manager.data_dir)),
                       **extra)
    return Process([sys.executable, "-m", "watcher"], env, REPO).start()


def _ready_pid(proc: Process, not_pid: int | None, timeout: float = 30.0) -> tuple[int, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in proc.find("delegate.ready"):
            if event["delegate_pid"] != not_pid:
                return int(event["delegate_pid"]), time.perf_counter()
        time.sleep(0.01)
    raise AssertionError(f"no delegate became ready: {proc.tail()}")


def _measure(manager: Manager, base: Path) -> str:
    rows: list[tuple[str, str, str]] = []
    w = _watcher(manager, base / "w1", DELEGATE_STORAGE_URL=f"{manager.url}/storage",
                 WATCHER_UPGRADE_FIRST_CHECK_S="1", WATCHER_UPGRADE_CHECK_INTERVAL_S="1",
                 WATCHER_UPGRADE_CHECK_JITTER_S="0")
    try:
        pid, _ = _ready_pid(w, None)
        time.sleep(5)  # idle, a few (empty) upgrade checks done
        rows.append(("watcher RSS, idle (MiB)", f"{rss_mib(w.pid):.1f}", "< 30 MiB"))
        rows.append(("watcher PSS, idle (MiB)", f"{pss_mib(w.pid):.1f}", "shared pages divided"))

        # SIGKILL -> a new process registered (delegate-ready), several times
        backs = []
        for _ in range(KILLS):
            t0 = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            pid, t1 = _ready_pid(w, pid)
            backs.append(t1 - t0)
            w.events.clear()
            time.sleep(1.0)
        rows.append(("SIGKILL to registered again (s, median)", f"{median(backs):.2f}",
                     f"< 2 s; max {max(backs):.2f} over {KILLS}"))

        # SIGSTOP -> detected as hung
        t0 = time.perf_counter()
        os.kill(pid, signal.SIGSTOP)
        w.wait_event("delegate.hung", timeout=30, delegate_pid=pid)
        hung_s = time.perf_counter() - t0
        rows.append(("SIGSTOP to hang detected (s)", f"{hung_s:.2f}",
                     f"within WATCHER_HEARTBEAT_TIMEOUT_S={HANG_TIMEOUT_S:g} + one heartbeat"))
        pid, _ = _ready_pid(w, pid)

        # a stream of tasks across an upgrade: the longest wait for acquisition
        ids: list[str] = []
        stop = threading.Event()

        def feed() -> None:
            while not stop.is_set():
                ids.append(manager.submit("SHELL_SCRIPT", {"script": "true"}))
                time.sleep(0.05)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        time.sleep(3)
        publish.publish(manager.data_dir, "delegate", "9.0.0")
        t0 = time.perf_counter()
        done = w.wait_event("upgrade.completed", timeout=60)
        upgrade_s = time.perf_counter() - t0
        w.wait_event("delegate.exited", timeout=60, delegate_pid=done["old_pid"])
        time.sleep(3)
        stop.set()
        feeder.join()
        tasks = [manager.wait_task(t, timeout=60) for t in ids]
        waits = [(t["startedAt"] - t["createdAt"]) / 1000 for t in tasks if t["startedAt"]]
        starts = sorted(t["startedAt"] for t in tasks if t["startedAt"])
        gaps = [(b - a) / 1000 for a, b in itertools.pairwise(starts)]
        ok = sum(1 for t in tasks if t["status"] == "SUCCEEDED")
        rows.append(("upgrade: publish to new version took over (s)", f"{upgrade_s:.2f}",
                     "includes the check interval (1 s) and the download"))
        rows.append(("upgrade: longest acquisition gap (s)", f"{max(gaps):.2f}",
                     f"< 2 s; tasks submitted every 0.05 s; {ok}/{len(tasks)} succeeded"))
        rows.append(("upgrade: longest submit-to-acquire wait (s)", f"{max(waits):.2f}",
                     f"median {median(waits):.3f} s"))
        rows.append(("watcher RSS after an upgrade (MiB)", f"{rss_mib(w.pid):.1f}",
                     "urllib loaded for the download; signatures checked in a subprocess"))
        rows.extend(_crypto_rows(base / "w1"))
    finally:
        w.stop(timeout=30)
    return table("watcher (issue 6)", rows)
