"""`scripts/demo`: the main job on the local stack, end to end, as a user would see it.

Starts the local manager, the local ECS, one delegate from the checkout configured exactly as its ECS
task spec configures it, shows it Connected in its group, runs a task through it, performs a real
rolling deployment of a sample service (its progress printed as it comes), and stops everything
cleanly.
Exit 0 only if every step worked, 1 if a step failed (it says which and why), 2 on a wrong option.

Examples:
    scripts/demo                 run it all once, then stop (what CI runs)
    scripts/demo --serve         then keep the stack up until Ctrl-C, printing how to reach it: the
                                 manager's URL, its data dir, where the API key is, how to submit
    scripts/demo --keep          keep the stack's directory afterwards (manager data, delegate work
                                 dir, both processes' logs in manager.log and delegate.log)

Environment read: none of its own. The delegate it starts gets the ECS task spec's variables
(ACCOUNT_ID, DELEGATE_TOKEN, MANAGER_HOST_AND_PORT, ...) from the manager, and variables of yours
that start with DELEGATE_ or ACCOUNT_ are not passed on to it. One variable differs from the task
spec: DELEGATE_RESOURCE_THRESHOLD=100, so a busy machine (the delegate runs outside a container and
sees the whole host's CPU) does not make it refuse the demo's tasks; the demo prints this.
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

    def __init__(self, base: Path, keep: bool = False) -> None:
        self.base = base
        self.keep = keep
        self.manager = Manager(base / "manager", tls=True)  # https with a throw-away certificate
        self.delegate: Process | None = None
        self.aws: Any = None  # devstack.aws.server.LocalAws, imported when started (moto is slow)

    def stop(self) -> None:
        if self.delegate is not None:
            self.delegate.stop()
            self._save("delegate.log", self.delegate)
        if self.aws is not None:
            self.aws.stop()
        process = self.manager.process
        self.manager.stop()
        self._save("manager.log", process)
        if self.keep:
            print(f"\nkept: {self.base} (manager data in manager/, logs in *.log)")

    def _save(self, name: str, process: Process | None) -> None:
        if self.keep and process is not None:
            (self.base / name).write_text("\n".join(process.lines) + "\n", encoding="utf-8")


def serve_banner(url: str, data_dir: Path, kept: bool) -> str:
    """How to reach the running stack: the pages, the data dir, the API key, a task to submit."""
    env_file = data_dir / "delegate.env"
    return "\n".join([
        "",
        f"manager:        {url}   (Delegates page: {url}/ui/delegates, tasks: {url}/ui/tasks)",
        f"data dir:       {data_dir}" + ("" if kept else "   (removed at exit; --keep keeps it)"),
        f"API key:        DEVSTACK_API_KEY in {env_file} (with MANAGER_HOST_AND_PORT), the first",
        "                admin key: log in to the pages with it; send it as 'Authorization: Bearer",
        "                <key>' to /api/setup/...",
        "submit a task:  .venv/bin/devstack task submit --data-dir "
        f"{data_dir} --type SHELL_SCRIPT --data '{{\"script\": \"echo hi\"}}'",
        f"follow it:      .venv/bin/devstack task show <task id> --data-dir {data_dir} --follow",
        "Ctrl-C to stop.",
    ])


def connected_member(manager: Manager) -> dict[str, Any] | None:
    groups = manager.api("GET", f"/api/setup/delegates?accountId={manager.account_id}")["groups"]
    for group in groups:
        for member in group["delegates"]:
            if group["groupName"] == GROUP and member["status"] == "CONNECTED":
                return dict(member)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true",
                        help="keep the stack running until Ctrl-C, printing how to reach it")
    parser.add_argument("--keep", action="store_true",
                        help="keep the stack's directory (data, work dir, logs) afterwards")
    args = parser.parse_args(argv)
    if args.keep:
        return _run_stack(args, Stack(Path(tempfile.mkdtemp(prefix="delegate-demo-")), keep=True))
    with tempfile.TemporaryDirectory(prefix="delegate-demo-") as tmp:
        return _run_stack(args, Stack(Path(tmp)))


def _run_stack(args: argparse.Namespace, stack: Stack) -> int:
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
        if manager.ca_file is not None:  # the throw-away certificate, trusted by file
            env["SSL_CERT_FILE"] = str(manager.ca_file)
        env.update(ecs_demo.delegate_aws_env(stack.aws))
        # Not in the task spec: outside a container the resource check reads the whole host's CPU,
        # and the demo shares this machine with whatever else runs on it.
        env["DELEGATE_RESOURCE_THRESHOLD"] = "100"
        print("       DELEGATE_RESOURCE_THRESHOLD=100 (the default is 80 %): outside a container the "
              "delegate sees the whole machine's CPU, and a busy machine must not refuse the demo's tasks")
        stack.delegate = Process([sys.executable, "-m", "delegate"], env, REPO).start()

    with Step(f"see the delegate Connected in group {GROUP!r}"):
        member = wait_until(lambda: connected_member(manager), 20, "a CONNECTED delegate", every=0.1,
                            tolerate=(OSError,))
        print(f"       {member['hostName']}  id={member['delegateId']}  "
              f"version={member['version']}  status={member['status']}")

    with Step("log in to the pages with the admin key and see it Connected there"):
        with manager.login().open(f"{manager.url}/ui/delegates", timeout=10) as resp:
            page = resp.read().decode()
        if member["hostName"] not in page or "Connected" not in page:
            raise RuntimeError("the delegates page does not show the delegate Connected")
        print(f"       {manager.url}/ui/delegates shows {member['hostName']} Connected")

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
        print(serve_banner(manager.url, manager.data_dir, stack.keep), flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()

    with Step("stop the delegate (SIGTERM): it unregisters and exits 0"):
        delegate, stack.delegate = stack.delegate, None
        code = delegate.stop()
        stack._save("delegate.log", delegate)  # --keep: stop() no longer sees it
        if code != 0:
            raise RuntimeError(f"delegate exited {code}: {delegate.tail()}")
        if connected_member(manager) is not None:
            raise RuntimeError("the delegate still shows CONNECTED after unregistering")
    print("\ndemo passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
