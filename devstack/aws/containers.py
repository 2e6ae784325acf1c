"""Opt-in: the local ECS runs its tasks' containers for real, with podman.

Without it (the default) a task is only a record that moves through its lifecycle, which is what
most tests want (fast, no container engine). With `LocalAws(containers=ContainerRunner(...))`
(`devstack aws --run-containers`), a task that reaches its start pulls each container's image,
runs it with the task definition's environment (plus RunTask overrides), command, entry point,
hostname and health check, and the task:

- stays PENDING until its containers run (a pull or start failure stops it, as ECS does, with
  `TaskFailedToStart` and `CannotPullContainerError` / `CannotStartContainerError`);
- stops when an essential container exits (`EssentialContainerExited`, with its exit code);
- has its containers stopped (SIGTERM, then SIGKILL after the container's `stopTimeout`, default
  30 s) when ECS stops the task: StopTask, a scale-in, a deployment replacing it.

Networking: every container runs with `--network host`. That is how a container here reaches a
manager listening on 127.0.0.1 (rootful podman's bridge cannot reach the host's loopback), and it
serves both network modes (bridge and awsvpc/Fargate) alike. The price: containers share the
host's ports, so `port_env` names a variable the image reads its listening port from (the delegate:
DELEGATE_HEALTH_PORT) and each task gets a free port in it; health check commands should read it.

podman is slow to start (~1 s a call): every podman call runs on the task's own thread, never under
the scheduler's lock. The scheduler only asks `state()`, a dictionary read.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import structlog

log = structlog.get_logger("devstack.aws.containers")

Phase = Literal["starting", "running", "failed", "exited"]
LABEL = "devstack.ecs.task"


@dataclass
class TaskContainers:
    """What the runner knows of one task's containers; read by the scheduler, written here."""

    phase: Phase = "starting"
    exit_code: int | None = None
    stop_code: str = ""
    reason: str = ""
    health: str = "UNKNOWN"
    names: list[str] = field(default_factory=list)
    stop_timeouts_s: list[int] = field(default_factory=list)
    stopping: bool = False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _loopback_registry(image: str) -> bool:
    host = image.split("/", 1)[0] if "/" in image else ""
    return urlsplit(f"//{host}").hostname in ("127.0.0.1", "localhost", "::1")


def _env_pairs(raw: Any) -> dict[str, str]:
    return {str(e["name"]): str(e.get("value", "")) for e in raw or () if "name" in e}


class ContainerRunner:
    """Runs local ECS tasks' containers with `podman` (a command prefix: storage options go there)."""

    def __init__(self, podman: Sequence[str] = ("podman",), run_options: Sequence[str] = (),
                 port_env: str | None = None, call_timeout_s: float = 300.0) -> None:
        self.podman = list(podman)
        self.run_options = list(run_options)
        self.port_env = port_env
        self.call_timeout_s = call_timeout_s
        self._tasks: dict[str, TaskContainers] = {}
        self._lock = threading.Lock()
        self._closed = False

    # --- what the scheduler calls (quick: no podman call on the caller's thread) -----------

    def launch(self, task_arn: str, definitions: list[dict[str, Any]], overrides: Any) -> None:
        """Start the task's containers in the background; `state()` tells how it went."""
        with self._lock:
            if task_arn in self._tasks or self._closed:
                return
            self._tasks[task_arn] = TaskContainers()
        threading.Thread(target=self._run_task, args=(task_arn, definitions, overrides or {}),
                         name=f"devstack-ecs-task-{task_arn[-8:]}", daemon=True).start()

    def state(self, task_arn: str) -> TaskContainers | None:
        with self._lock:
            return self._tasks.get(task_arn)

    def stop(self, task_arn: str) -> None:
        """ECS stops the task: SIGTERM its containers, SIGKILL after their stopTimeout."""
        with self._lock:
            state = self._tasks.get(task_arn)
            if state is None or state.stopping:
                return
            state.stopping = True
        threading.Thread(target=self._stop_task, args=(state,), daemon=True,
                         name=f"devstack-ecs-stop-{task_arn[-8:]}").start()

    def close(self) -> None:
        """Remove every container this runner started (the local AWS is stopping)."""
        with self._lock:
            self._closed = True
            names = [n for s in self._tasks.values() for n in s.names]
        for name in names:
            self._podman("rm", "--force", "--time", "2", name)

    # --- the task's thread ------------------------------------------------------------------

    def _podman(self, *args: str, timeout_s: float | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run([*self.podman, *args], capture_output=True, text=True,
                                  timeout=timeout_s or self.call_timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return subprocess.CompletedProcess(args, 125, "", f"podman {args[0]}: {exc}")

    def _stopping(self, state: TaskContainers) -> bool:
        with self._lock:
            return state.stopping

    def _fail(self, state: TaskContainers, code: str, reason: str) -> None:
        with self._lock:
            state.phase, state.stop_code, state.reason = "failed", "TaskFailedToStart", f"{code}: {reason}"
        log.info("containers.failed_to_start", reason=state.reason)

    def _run_args(self, name: str, task_arn: str, container: dict[str, Any],
                  override: dict[str, Any], port: int | None) -> list[str]:
        env = _env_pairs(container.get("environment")) | _env_pairs(override.get("environment"))
        if self.port_env and port is not None:
            env[self.port_env] = str(port)
        args = ["run", "--detach", "--name", name, "--label", f"{LABEL}={task_arn}",
                "--network", "host", "--no-healthcheck", *self.run_options]
        if container.get("hostname"):
            args += ["--hostname", str(container["hostname"])]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        entry = container.get("entryPoint")
        if entry:
            args += ["--entrypoint", entry[0]]
        command = list(override.get("command") or container.get("command") or [])
        return [*args, str(container["image"]), *(entry[1:] if entry else []), *command]

    def _run_task(self, task_arn: str, definitions: list[dict[str, Any]], overrides: Any) -> None:
        state = self._tasks[task_arn]
        by_name = {o.get("name"): o for o in overrides.get("containerOverrides") or ()}
        port = _free_port() if self.port_env else None
        for container in definitions:
            image = str(container.get("image", ""))
            pull = ["pull", "--quiet"] + (["--tls-verify=false"] if _loopback_registry(image) else [])
            pulled = self._podman(*pull, image)
            if pulled.returncode != 0:
                self._fail(state, "CannotPullContainerError",
                           f"pull image {image}: {pulled.stderr.strip()[-300:]}")
                return
            name = f"ecs-{task_arn.rsplit('/', 1)[-1]}-{container.get('name', 'c')}"
            with self._lock:
                if state.stopping:
                    return
                state.names.append(name)
                state.stop_timeouts_s.append(int(container.get("stopTimeout") or 30))
            started = self._podman(*self._run_args(name, task_arn, container,
                                                   by_name.get(container.get("name"), {}), port))
            if started.returncode != 0:
                self._fail(state, "CannotStartContainerError", started.stderr.strip()[-300:])
                return
            if self._stopping(state):  # stopped while it started: the stop may have missed it
                self._stop_task(state)
                return
            log.info("containers.started", task=task_arn.rsplit("/", 1)[-1], container=name, image=image)
        with self._lock:
            state.phase = "running"
        checks = [(n, c["healthCheck"]) for n, c in zip(state.names, definitions, strict=False)
                  if c.get("healthCheck")]
        if checks:
            threading.Thread(target=self._health_loop, args=(state, checks), daemon=True,
                             name=f"devstack-ecs-health-{task_arn[-8:]}").start()
        essential = [n for n, c in zip(state.names, definitions, strict=False)
                     if c.get("essential", True)]
        waited = self._podman("wait", essential[0] if essential else state.names[0],
                              timeout_s=10 ** 7)
        try:
            code: int | None = int(waited.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            code = None
        with self._lock:
            state.phase, state.exit_code = "exited", code
            state.stop_code, state.reason = "EssentialContainerExited", "Essential container in task exited"
        log.info("containers.exited", task=task_arn.rsplit("/", 1)[-1], exit_code=code)

    def _health_loop(self, state: TaskContainers, checks: list[tuple[str, dict[str, Any]]]) -> None:
        """The task definition's healthCheck, run in the container as the ECS agent does."""
        name, check = checks[0]
        command = list(check.get("command") or [])
        argv = (["/bin/sh", "-c", " ".join(command[1:])] if command[:1] == ["CMD-SHELL"]
                else command[1:] if command[:1] == ["CMD"] else command)
        interval = float(check.get("interval", 30))
        grace_until = time.monotonic() + float(check.get("startPeriod", 0))
        retries, failures = int(check.get("retries", 3)), 0
        while state.phase == "running" and not state.stopping:
            ok = self._podman("exec", name, *argv,
                              timeout_s=float(check.get("timeout", 5)) + 5).returncode == 0
            failures = 0 if ok else failures + 1
            with self._lock:
                if ok:
                    state.health = "HEALTHY"
                elif failures >= retries and time.monotonic() >= grace_until:
                    state.health = "UNHEALTHY"
            time.sleep(interval if state.health != "UNKNOWN" else min(interval, 1.0))

    def _stop_task(self, state: TaskContainers) -> None:
        for name, stop_s in zip(list(state.names), list(state.stop_timeouts_s), strict=False):
            self._podman("stop", "--time", str(stop_s), name)
            self._podman("rm", "--force", name)
