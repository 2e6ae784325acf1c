"""Real processes of the local manager and the delegate, on free loopback ports.

Used by the tests, the demo and the benchmarks. Nothing here fakes a component: the manager is
`python -m manager serve`, the delegate is `python -m delegate`, each a real process that gets
real signals, driven through its public surfaces (HTTP APIs, exit codes, files, structured logs).
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack.tlscert import make_cert

REPO = Path(__file__).resolve().parent.parent
FINAL_STATES = ("SUCCEEDED", "FAILED", "ERRORED", "EXPIRED", "ABORTED")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.05,
               tolerate: tuple[type[Exception], ...] = ()) -> Any:
    """Poll `predicate` until it returns something truthy; `tolerate`d errors count as not yet."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
        except tolerate as exc:
            value, last_error = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f" (last error: {last_error})" if last_error else ""))
        time.sleep(every)


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


class Process:
    """A child process whose stdout/stderr lines are collected (JSON lines decoded)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.args, self.env, self.cwd = args, env, cwd
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def start(self) -> Process:
        self.proc = subprocess.Popen(
            self.args, env=self.env, cwd=self.cwd, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1,
            # its own session: a Ctrl-C meant for the demo or a test run does not hit it first;
            # whoever started it stops it in order (delegate before manager)
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))
                try:
                    value = json.loads(line)
                    if isinstance(value, dict):
                        self.events.append(value)
                except ValueError:
                    pass

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def find(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e.get("event") == event
                    and all(e.get(k) == v for k, v in fields.items())]

    def wait_event(self, event: str, timeout: float = 15.0, **fields: Any) -> dict[str, Any]:
        found = wait_until(lambda: self.find(event, **fields), timeout,
                           f"log event {event} {fields or ''} (last lines: {self.tail()})")
        return found[0]  # type: ignore[no-any-return]

    def tail(self, n: int = 8) -> list[str]:
        with self._lock:
            return self.lines[-n:]

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait(5)
        return self.proc.returncode


def python_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DELEGATE_", "ACCOUNT_", "MANAGER_", "POLL_", "AWS_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Manager:
    """`harness-manager serve` (the real manager) as a process on a free port; its data dir is kept
    across restarts."""

    def __init__(self, data_dir: Path, *extra_args: str, tls: bool = False) -> None:
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        #: with tls, the manager serves https with a throw-away certificate that its clients trust
        #: by file (`ca_file`; a delegate gets SSL_CERT_FILE from `delegate_env`)
        self.ca_file: Path | None = None
        if tls:
            files = make_cert(data_dir.parent / f"{data_dir.name}-tls")
            self.ca_file = files.cert
            self.extra_args += ["--tls-cert", str(files.cert), "--tls-key", str(files.key)]
        self.port = 0
        self.process: Process | None = None
        self.env: dict[str, str] = {}

    def __enter__(self) -> Manager:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self, timeout: float = 20.0) -> Manager:
        env_file = self.data_dir / "delegate.env"
        env_file.unlink(missing_ok=True)
        args = [sys.executable, "-m", "manager", "serve", "--port", str(self.port),
                "--data-dir", str(self.data_dir), *self.extra_args]
        self.process = Process(args, python_env(), REPO).start()
        wait_until(env_file.exists, timeout, f"manager ready ({self.process.tail()})")
        self.env = read_env_file(env_file)
        self.port = int(self.env["MANAGER_HOST_AND_PORT"].rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def url(self) -> str:
        return self.env["MANAGER_HOST_AND_PORT"]

    def login(self, key: str | None = None) -> urllib.request.OpenerDirector:
        """A urllib opener logged in to the pages through their form (CSRF included)."""
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar),
                                             urllib.request.HTTPSHandler(context=self.ssl_context()))
        with opener.open(f"{self.url}/ui/login", timeout=10) as resp:
            page = resp.read().decode()
        csrf = page.split("name='csrf' value='", 1)[1].split("'", 1)[0]
        form = urllib.parse.urlencode({"csrf": csrf, "key": key or self.env["DEVSTACK_API_KEY"]})
        with opener.open(f"{self.url}/ui/login", data=form.encode(), timeout=10) as resp:
            resp.read()
        return opener

    def ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None

    @property
    def account_id(self) -> str:
        return self.env["ACCOUNT_ID"]

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        """Call the setup API with the API key; returns the decoded JSON ('resource' unwrapped)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self.env['DEVSTACK_API_KEY']}",
                     "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context()) as resp:
            value = json.loads(resp.read() or b"null")
        if isinstance(value, dict) and "resource" in value:
            return value["resource"]
        return value

    def delegates(self) -> list[dict[str, Any]]:
        answer = self.api("GET", f"/api/setup/delegates?accountId={self.account_id}")
        return [d for g in answer["groups"] for d in g["delegates"]]

    def delegate(self, **match: Any) -> dict[str, Any] | None:
        for d in self.delegates():
            if all(d.get(k) == v for k, v in match.items()):
                return d
        return None

    def submit(self, task_type: str, data: dict[str, Any], **extra: Any) -> str:
        body = {"accountId": self.account_id, "taskType": task_type, "data": data, **extra}
        return str(self.api("POST", "/api/setup/tasks", body)["taskId"])

    def task(self, task_id: str) -> dict[str, Any]:
        return self.api("GET", f"/api/setup/tasks/{task_id}")  # type: ignore[no-any-return]

    def wait_task(self, task_id: str, timeout: float = 30.0,
                  final: tuple[str, ...] = FINAL_STATES) -> dict[str, Any]:
        return wait_until(  # type: ignore[no-any-return]
            lambda: (t := self.task(task_id))["status"] in final and t, timeout,
            f"task {task_id} to finish", every=0.1)


def delegate_env(manager: Manager, work_dir: Path, **extra: str) -> dict[str, str]:
    """The task spec environment for a delegate talking to `manager`."""
    env = python_env(
        ACCOUNT_ID=manager.account_id,
        DELEGATE_TOKEN=manager.env["DELEGATE_TOKEN"],
        MANAGER_HOST_AND_PORT=manager.url,
        DELEGATE_TYPE="ECS",
        DELEGATE_GROUP_NAME="test-group",
        POLL_FOR_TASKS="false",
        DEPLOY_MODE="KUBERNETES",
        DELEGATE_HOSTNAME="Harness-ECS-Delegate",
        DELEGATE_HEALTH_PORT="0",
        DELEGATE_WORK_DIR=str(work_dir),
        DELEGATE_HEARTBEAT_INTERVAL_S="1",
        DELEGATE_KEEPALIVE_INTERVAL_S="2",
        DELEGATE_POLL_INTERVAL_S="0.5",
        # tests share two cores with each other: never refuse work because the machine is busy
        DELEGATE_RESOURCE_THRESHOLD="100",
        LOG_FORMAT="json",
    )
    if manager.ca_file is not None:
        env["SSL_CERT_FILE"] = str(manager.ca_file)
    env.update(extra)
    return env


def start_delegate(manager: Manager, work_dir: Path, **extra: str) -> Process:
    work_dir.mkdir(parents=True, exist_ok=True)
    return Process([sys.executable, "-m", "delegate"], delegate_env(manager, work_dir, **extra),
                   REPO).start()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
