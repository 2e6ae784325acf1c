"""`scripts/demo`: the main job on the local stack, end to end, as a user would see it.

Starts the local manager, the local ECS, one delegate from the checkout configured exactly as its ECS
task spec configures it, shows it Connected in its group, runs a task through it, performs a real
rolling deployment of a sample service (its progress printed as it comes), and stops everything
cleanly.
Exit 0 only if every step worked. With `--serve` it keeps running (printing the delegates page URL)
until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from devstack import ecs_demo
from devstack.procs import REPO, Manager, Process, wait_until

GROUP = "ecs-demo"


class Step:
    """Prints `[ .. ] what`, then `[ ok ]` or `[FAIL]` with the reason; a failure ends the demo."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.t0 = 0.0

    def __enter__(self) -> Step:
        print(f"[ .. ] {self.what}", flush=True)
        self.t0 = time.monotonic()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 _tb: TracebackType | None) -> Literal[False]:
        if exc is None:
            print(f"[ ok ] {self.what} ({time.monotonic() - self.t0:.2f}s)", flush=True)
            return False
        print(f"[FAIL] {self.what}: {exc}", flush=True)
        raise SystemExit(1) from exc


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


class Stack:
    """What the demo started, so that all of it is stopped whatever happens."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.manager = Manager(base / "manager")
        self.delegate: Process | None = None
        self.aws: Any = None  # devstack.aws.server.LocalAws, imported when started (moto is slow)

    def stop(self) -> None:
        if self.delegate is not None:
            self.delegate.stop()
        if self.aws is not None:
            self.aws.stop()
        self.manager.stop()


def connected_member(manager: Manager) -> dict[str, Any] | None:
    groups = manager.api("GET", f"/api/setup/delegates?accountId={manager.account_id}")["groups"]
    for group in groups:
        for member in group["delegates"]:
            if group["groupName"] == GROUP and member["status"] == "CONNECTED":
                return dict(member)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__)
    parser.add_argument("--serve", action="store_true", help="keep running until Ctrl-C")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="delegate-demo-") as tmp:
        stack = Stack(Path(tmp))
        try:
            return run(args, stack)
        finally:
            stack.stop()


def run(args: argparse.Namespace, stack: Stack) -> int:
    manager = stack.manager
    with Step("start the local manager"):
        manager.start()
        print(f"       manager at {manager.url}")

    with Step("start the local ECS (moto + the ECS scheduler)"):
        from devstack.aws.server import LocalAws

        ecs_demo.quiet_local_aws()
        stack.aws = LocalAws(port=0).start()
        print(f"       local AWS at {stack.aws.endpoint_url}")

    with Step("start a delegate with the ECS task spec environment"):
        work_dir = stack.base / "delegate"
        work_dir.mkdir()
        env = task_spec_env(manager.env, work_dir)
        env.update(ecs_demo.delegate_aws_env(stack.aws))
        stack.delegate = Process([sys.executable, "-m", "delegate"], env, REPO).start()

    with Step(f"see the delegate Connected in group {GROUP!r}"):
        member = wait_until(lambda: connected_member(manager), 20, "a CONNECTED delegate", every=0.1,
                            tolerate=(OSError,))
        print(f"       {member['hostName']}  id={member['delegateId']}  "
              f"version={member['version']}  status={member['status']}")

    with Step("run a SHELL_SCRIPT task through the delegate"):
        task_id = manager.submit("SHELL_SCRIPT", {
            "script": "echo hello from $(hostname); echo a warning >&2"}, timeoutMs=30_000)
        task = manager.wait_task(task_id, timeout=30)
        for line in task.get("logLines", []):
            print(f"       | {line.get('message')}")
        if task["status"] != "SUCCEEDED":
            raise RuntimeError(f"task ended {task['status']}: {task.get('errorMessage')}")

    with Step("create cluster 'demo' with service 'web' running 2 tasks of sample:1"):
        world = ecs_demo.SampleWorld(stack.aws)
        print(f"       {world.describe()}")

    with Step("rolling deploy of sample:2 through the manager (ECS_ROLLING_DEPLOY)"):
        outcome = ecs_demo.deploy(manager, world, "sample:2")
        print(f"       {world.describe()}")
        if outcome["status"] != "SUCCEEDED":
            raise RuntimeError(f"deploy ended {outcome['status']}: {outcome.get('errorMessage')}")

    if args.serve:
        print(f"\nDelegates page: {manager.url}/ui/delegates   (tasks: {manager.url}/ui/tasks)")
        print("Ctrl-C to stop.", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()

    with Step("stop the delegate (SIGTERM): it unregisters and exits 0"):
        delegate, stack.delegate = stack.delegate, None
        code = delegate.stop()
        if code != 0:
            raise RuntimeError(f"delegate exited {code}: {delegate.tail()}")
        if connected_member(manager) is not None:
            raise RuntimeError("the delegate still shows CONNECTED after unregistering")
    print("\ndemo passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
