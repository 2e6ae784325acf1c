"""Issue 11: a hostile manager. Peak memory and the delegate's state under each flood, beside an idle
delegate in the same run; probes tried per category and how many were refused as intended.

Uses the scripted hostile manager of `tests/hostile` (a small aiohttp server that answers whatever
a probe needs) and real delegate processes. Peak RSS is the kernel's high-water mark (VmHWM).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.common import table
from devstack.procs import Process, python_env, wait_until
from tests.hostile.scripted import ACCOUNT, HostileManager, envelope
from tests.hostile.test_answers import BAD_FRAMES
from tests.hostile.test_config_edges import CASES
from tests.hostile.test_config_edges import run as config_run
from tests.hostile.test_ids import BAD_IDS

MiB = 1024 * 1024


def peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Run:
    """One hostile manager and one delegate in a fresh directory."""

    def __init__(self, base: Path, name: str, answers: dict[str, Any] | None = None,
                 wait: bool = True, **env: str) -> None:
        self.dir = base / name
        self.hm = HostileManager()
        self.hm.answers.update(answers or {})
        self.wait = wait
        self.env = env
        self.proc: Process | None = None

    def __enter__(self) -> Run:
        self.hm.__enter__()
        (self.dir / "work").mkdir(parents=True)
        full = python_env(PYTHONDONTWRITEBYTECODE="1")
        full.update(self.hm.env(str(self.dir / "work"), **self.env))
        self.proc = Process([sys.executable, "-m", "delegate"], full, self.dir).start()
        if self.wait:
            self.proc.wait_event("manager.registered", timeout=30)
        return self

    def __exit__(self, *_: object) -> None:
        if self.proc is not None:
            self.proc.stop()
        self.hm.__exit__()

    @property
    def p(self) -> Process:
        assert self.proc is not None
        return self.proc

    def state(self) -> str:
        """alive and heard from (heartbeats in the last 5 s), or how it is not."""
        if not self.p.alive():
            return f"EXITED {self.p.proc.poll() if self.p.proc else '?'}"
        since = time.monotonic()
        try:
            wait_until(lambda: self.hm.beats_since(since) >= 2, 15, "heartbeats")
        except AssertionError:
            return "alive, not heartbeating"
        return "running, registered"


def _floods(base: Path) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []

    with Run(base, "idle", POLL_FOR_TASKS="true") as r:
        time.sleep(3)
        floor = peak_mib(r.p.pid)
        rows.append(("idle delegate (floor)", f"{floor:.0f} MiB", r.state()))

    def add(what: str, peak: float, state: str, note: str = "") -> None:
        rows.append((what, f"{peak:.0f} MiB ({peak / floor:.1f}x floor)",
                     f"{state}{'; ' + note if note else ''}"))

    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        try:
            for _ in range(400):
                await resp.write(b" " * MiB)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    with Run(base, "huge", POLL_FOR_TASKS="true") as r:
        r.hm.answers["heartbeat"] = huge
        wait_until(lambda: len(r.p.find("heartbeat.failed")) >= 3, 60, "3 refused answers")
        add("400 MB heartbeat answers (x3, unannounced length)", peak_mib(r.p.pid), r.state(),
            "each refused at the 4 MiB answer limit")

    events = [{"eventType": "DelegateTaskEvent", "accountId": ACCOUNT,
               "delegateTaskId": f"flood-{i}"} for i in range(20_000)]
    counts = {"polls": 0, "acquiring": 0, "peak": 0}

    async def offers(_request: web.Request) -> web.Response:
        counts["polls"] += 1
        return envelope({"delegateTaskEvents": events if counts["polls"] <= 3 else []})

    async def slow_acquire(_request: web.Request) -> web.Response:
        counts["acquiring"] += 1
        counts["peak"] = max(counts["peak"], counts["acquiring"])
        await asyncio.sleep(0.2)
        counts["acquiring"] -= 1
        return envelope(None, 409)

    with Run(base, "offers", POLL_FOR_TASKS="true") as r:
        r.hm.answers["task-events"] = offers
        r.hm.answers["acquire"] = slow_acquire
        wait_until(lambda: counts["polls"] >= 5, 60, "the offer flood polled")
        add("20,000 offers in one answer (x3)", peak_mib(r.p.pid), r.state(),
            f"{counts['peak']} acquires at most at once")

    async def slow_logs(_request: web.Request) -> web.Response:
        await asyncio.sleep(2.0)
        return envelope({})

    script = "for i in $(seq 1 10000); do printf 'line %s %08190d\\n' $i 0; done"
    with Run(base, "printing") as r:
        r.hm.answers["logs"] = slow_logs
        for n in range(3):
            r.hm.packages[f"p-{n}"] = {"delegateTaskId": f"p-{n}", "accountId": ACCOUNT,
                                       "taskType": "SHELL_SCRIPT", "data": {"script": script}}
        r.hm.push(*(json.dumps({"eventType": "DelegateTaskEvent", "accountId": ACCOUNT,
                                "delegateTaskId": f"p-{n}"}) for n in range(3)))
        wait_until(lambda: len(r.hm.requests("result")) >= 3, 180, "three results", every=0.2)
        marks = sum(line["message"].count("log lines dropped")
                    for seen in r.hm.requests("logs") for line in json.loads(seen.body)["lines"])
        add("3 scripts x 10,000 lines of 8 KiB, manager takes 2 s a batch", peak_mib(r.p.pid),
            r.state(), f"{marks} truncation marks in the shipped logs")

    with Run(base, "junk") as r:
        lines_before = len(r.p.lines)
        t0 = time.monotonic()
        for _ in range(20):
            r.hm.push(*(["junk"] * 10_000))
        elapsed = time.monotonic() - t0
        state = r.state()
        add(f"200,000 junk frames in {elapsed:.0f} s", peak_mib(r.p.pid), state,
            f"{len(r.p.lines) - lines_before} log lines")

    with Run(base, "deep") as r:
        for _ in range(10):
            r.hm.push(*BAD_FRAMES[:3])
        add("30 frames nested 50,000-100,000 deep", peak_mib(r.p.pid), r.state())
    return rows


def _probes(base: Path) -> list[tuple[str, str, str]]:
    rows = []

    def count(what: str, results: list[bool], intended: str) -> None:
        rows.append((what, f"{sum(results)} / {len(results)}", intended))

    with Run(base, "frames") as r:
        ok = []
        for frame in BAD_FRAMES:
            connects = len(r.hm.requests("stream"))
            r.hm.push(frame)
            time.sleep(0.3)
            ok.append(r.p.alive() and not r.hm.requests("acquire")
                      and len(r.hm.requests("stream")) == connects)
        ok[-1] = ok[-1] and r.state() == "running, registered"
        count("bad stream frames", ok, "skipped: no acquire, no reconnect, still running")
        ok = []
        for task_id in BAD_IDS:
            r.hm.push(json.dumps({"eventType": "DelegateTaskEvent", "accountId": ACCOUNT,
                                  "delegateTaskId": task_id}))
            time.sleep(0.3)
            ok.append(r.p.alive() and not r.hm.requests("acquire"))
        count("bad task ids offered", ok, "never acquired, never in a URL or path")
        ok = []
        for field, value in (("delegateTaskId", "other-task"), ("accountId", "otherAcct"),
                             ("delegateId", "otherDelegate")):
            task_id = f"pkg-{field}"
            r.hm.packages[task_id] = {"delegateTaskId": task_id, "accountId": ACCOUNT,
                                      "taskType": "NOOP", "data": {}, field: value}
            r.hm.push(json.dumps({"eventType": "DelegateTaskEvent", "accountId": ACCOUNT,
                                  "delegateTaskId": task_id}))
            sent = _result(r.hm, task_id)
            ok.append(sent is not None and "refused" in sent["response"].get("errorMessage", ""))
        count("packages for another task/account/delegate", ok, "refused and reported")

    rows += _redirects(base)
    rows += _secrets(base)
    ok = []
    for name, value, _secret in CASES:
        done = config_run(base / "config", **{name: value})
        ok.append(done.returncode == 3 and name in done.stderr and "Traceback" not in done.stderr)
    count("bad settings", ok, "exit 3 naming the variable, no traceback")
    return rows


def _result(hm: HostileManager, task_id: str, timeout: float = 20) -> dict[str, Any] | None:
    try:
        seen = wait_until(lambda: [s for s in hm.requests("result")
                                   if f"/tasks/{task_id}/" in s.raw_path], timeout, task_id)
    except AssertionError:
        return None
    return json.loads(seen[0].body)  # type: ignore[no-any-return]


def _redirects(base: Path) -> list[tuple[str, str, str]]:
    ok: list[bool] = []
    missed: list[str] = []
    for status in (307, 308):
        for endpoint in ("register", "stream", "result"):
            with HostileManager() as elsewhere:
                def redirect(status: int = status, target: HostileManager = elsewhere) -> Callable[
                        [web.Request], Any]:
                    async def answer(request: web.Request) -> web.Response:
                        return web.Response(status=status,
                                            headers={"Location": target.url + request.path_qs})
                    return answer

                with Run(base, f"redirect-{status}-{endpoint}", {endpoint: redirect()},
                         wait=endpoint != "register") as r:
                    r.hm.packages["t-1"] = {"delegateTaskId": "t-1", "accountId": ACCOUNT,
                                            "taskType": "NOOP", "data": {}}
                    time.sleep(1.5)
                    r.hm.push(json.dumps({"eventType": "DelegateTaskEvent",
                                          "accountId": ACCOUNT, "delegateTaskId": "t-1"}))
                    time.sleep(2.0)
                    named = any(str(status) in json.dumps(e) for e in r.p.events)
                    good = r.p.alive() and not elsewhere.seen and named
                    ok.append(good)
                    if not good:
                        missed.append(f"{status} {endpoint}: alive={r.p.alive()} "
                                      f"followed={len(elsewhere.seen)} named={named}")
    note = "not followed: nothing reaches the other origin; an error names the status"
    return [("307/308 on register, stream, result", f"{sum(ok)} / {len(ok)}",
             note + "".join(f"; MISSED {m}" for m in missed))]


def _secrets(base: Path) -> list[tuple[str, str, str]]:
    secret_env = {"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
                  "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEXAMPLESESSIONTOKEN",
                  "HTTPS_PROXY": "http://proxyuser:proxypass123@127.0.0.9:3128",
                  "NO_PROXY": "127.0.0.1"}
    with Run(base, "secrets", **secret_env) as r:
        token = r.hm.token
        r.hm.packages["env"] = {"delegateTaskId": "env", "accountId": ACCOUNT,
                                "taskType": "SHELL_SCRIPT", "data": {"script": "env"}}
        enc = ('echo "$X"; echo "$X" | tr a-f A-F; echo "$X" | tr a-c A-C; '
               'printf %s "$X" | base64; echo "$X" | base64; printf "ab%s" "$X" | base64 -w0; '
               'echo; h="$X"; o=; while [ -n "$h" ]; do o="$o\\x${h:0:2}"; h=${h:2}; done; '
               'printf "$o" | base64')
        r.hm.packages["enc"] = {"delegateTaskId": "enc", "accountId": ACCOUNT,
                                "taskType": "SHELL_SCRIPT",
                                "data": {"script": enc, "environment": {"X": token}}}
        for task_id in ("env", "enc"):
            r.hm.push(json.dumps({"eventType": "DelegateTaskEvent", "accountId": ACCOUNT,
                                  "delegateTaskId": task_id}))
            _result(r.hm, task_id)
        logs = {task_id: "\n".join(line["message"] for s in r.hm.requests("logs")
                                   if f"/tasks/{task_id}/" in s.raw_path
                                   for line in json.loads(s.body)["lines"])
                for task_id in ("env", "enc")}
    env_ok = [token not in logs["env"]] + [
        v not in logs["env"] for k, v in secret_env.items() if k != "NO_PROXY"]
    masked = logs["enc"].count("[redacted]")
    return [("credentials in a script's environment", f"{sum(env_ok)} / {len(env_ok)}",
             "token, AWS secret key, session token, proxy credentials: not passed"),
            ("token printed by a script (case, base64 forms)", f"{min(masked, 7)} / 7",
             "masked before it leaves the delegate")]


def run() -> str:
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        base = Path(tmp)
        floods = _floods(base)
        probes = _probes(base)
    return "\n".join([
        table("Peak memory under each flood (VmHWM; target < 200 MiB, task spec 512 MiB)", floods),
        table("Probes tried and refused as intended", probes),
        f"(run as uid {os.geteuid()}; non-dumpable /proc/<pid>/environ is proven by "
        "tests/hostile/test_secrets.py with a non-root delegate)",
    ])
