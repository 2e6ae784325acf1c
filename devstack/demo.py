"""`scripts/demo`: the main job on the local stack, end to end, as a user would see it.

Starts the local manager (and the local AWS when the ECS executors are present), one delegate from
the checkout configured exactly as its ECS task spec configures it, shows it Connected in its group,
runs a task through it, and stops everything cleanly. Exit 0 only if every step worked. With `--serve`
it keeps running (printing the delegates page URL) until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GROUP = "ecs-demo"


class Step:
    """Prints `[ .. ] what` then `[ok]` / `[FAIL]` with a reason; failures end the demo."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> Step:
        print(f"[ .. ] {self.what}", flush=True)
        self.t0 = time.monotonic()
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, _tb: Any) -> bool:
        took = time.monotonic() - self.t0
        if exc is None:
            print(f"[ ok ] {self.what} ({took:.2f}s)", flush=True)
            return False
        print(f"[FAIL] {self.what}: {exc}", flush=True)
        raise SystemExit(1) from exc


class Child:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling; report the last error
            last_error = exc
        time.sleep(0.1)
    raise TimeoutError(f"{what} not seen within {timeout:.0f}s"
                       + (f" (last error: {last_error})" if last_error else ""))


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


class Api:
    def __init__(self, env: dict[str, str]) -> None:
        self.base = env["MANAGER_HOST_AND_PORT"]
        self.key = env["DEVSTACK_API_KEY"]
        self.account = env["ACCOUNT_ID"]

    def call(self, method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(
            self.base + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback only
            value = json.loads(resp.read() or b"null")
        return value.get("resource") if isinstance(value, dict) else value


def task_spec_env(manager_env: dict[str, str], work_dir: Path) -> dict[str, str]:
    """The container environment of the ECS task spec, pointed at the local manager."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DELEGATE_", "ACCOUNT_"))}
    env.update({
        "ACCOUNT_ID": manager_env["ACCOUNT_ID"],
        "DELEGATE_TOKEN": manager_env["DELEGATE_TOKEN"],
        "MANAGER_HOST_AND_PORT": manager_env["MANAGER_HOST_AND_PORT"],
        "DELEGATE_CHECK_LOCATION": "delegateprod.txt",
        "WATCHER_CHECK_LOCATION": "watcherprod.txt",
        "DELEGATE_TYPE": "ECS",
        "DELEGATE_GROUP_NAME": GROUP,
        "DEPLOY_MODE": "KUBERNETES",
        "POLL_FOR_TASKS": "false",
        "DELEGATE_HOSTNAME": "Harness-ECS-Delegate",
        "DELEGATE_HEALTH_PORT": "0",
        "DELEGATE_WORK_DIR": str(work_dir),
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__)
    parser.add_argument("--serve", action="store_true", help="keep running until Ctrl-C")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="delegate-demo-"))
    children: list[Child] = []
    print(f"demo data and logs: {base}")
    try:
        return _run(args, base, children)
    finally:
        for child in reversed(children):
            child.stop()
        if not args.keep and not args.serve:
            for path in sorted(base.rglob("*"), reverse=True):
                path.unlink() if path.is_file() or path.is_symlink() else path.rmdir()
            base.rmdir()


def _run(args: argparse.Namespace, base: Path, children: list[Child]) -> int:
    py = sys.executable
    (base / "manager").mkdir()
    with Step("start the local manager"):
        children.append(Child("manager", [py, "-m", "devstack", "manager", "--port", "0",
                                          "--data-dir", str(base / "manager")],
                              dict(os.environ), base / "manager.log"))
        env_file = base / "manager" / "delegate.env"
        wait_for("delegate.env", env_file.exists, 20)
        manager_env = read_env(env_file)
        api = Api(manager_env)
        print(f"       manager at {api.base}")

    delegate_env = task_spec_env(manager_env, base / "delegate")
    (base / "delegate").mkdir()
    with Step("start a delegate with the ECS task spec environment"):
        delegate = Child("delegate", [py, "-m", "delegate"], delegate_env, base / "delegate.log")
        children.append(delegate)

    def connected() -> dict[str, Any] | None:
        groups = api.call("GET", f"/api/setup/delegates?accountId={api.account}")["groups"]
        for group in groups:
            for d in group["delegates"]:
                if group["groupName"] == GROUP and d["status"] == "CONNECTED":
                    return dict(d)
        return None

    with Step(f"see the delegate Connected in group {GROUP!r}"):
        member = wait_for("a CONNECTED delegate", connected, 20)
        print(f"       {member['hostName']}  id={member['delegateId']}  "
              f"version={member['version']}  status={member['status']}")

    with Step("run a SHELL_SCRIPT task through the delegate"):
        task_id = api.call("POST", "/api/setup/tasks", {
            "accountId": api.account, "taskType": "SHELL_SCRIPT", "timeoutMs": 30_000,
            "data": {"script": "echo hello from $(hostname); echo a warning >&2"}})["taskId"]
        final = ("SUCCEEDED", "FAILED", "ERRORED", "EXPIRED", "ABORTED")
        task = wait_for("the task to finish",
                        lambda: (t := api.call("GET", f"/api/setup/tasks/{task_id}"))["status"]
                        in final and t, 30)
        for line in task.get("logLines", []):
            print(f"       | {line.get('message')}")
        if task["status"] != "SUCCEEDED":
            raise RuntimeError(f"task ended {task['status']}: {task.get('errorMessage')}")

    if args.serve:
        print(f"\nDelegates page: {api.base}/ui/delegates   (tasks: {api.base}/ui/tasks)")
        print("Ctrl-C to stop.", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()

    with Step("stop the delegate (SIGTERM): it unregisters and exits 0"):
        code = delegate.stop()
        children.remove(delegate)
        if code != 0:
            raise RuntimeError(f"delegate exited {code}; see {delegate.log_path}")
        d = api.call("GET", f"/api/setup/delegates?accountId={api.account}")
        statuses = [m["status"] for g in d["groups"] for m in g["delegates"]]
        if "CONNECTED" in statuses:
            raise RuntimeError("the delegate still shows CONNECTED after unregistering")
    print("\ndemo passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
