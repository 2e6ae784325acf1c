"""Submit tasks to a running manager and follow them.

  harness-manager task submit --data-dir DIR --type SHELL_SCRIPT --data '{"script": "echo hi"}'
  harness-manager task show TASK_ID --data-dir DIR [--follow]

Reads the manager's address and API key from DIR/delegate.env (the manager writes it there:
MANAGER_HOST_AND_PORT, DEVSTACK_API_KEY); no other environment.

Examples:
  harness-manager task submit --data-dir data --type SHELL_SCRIPT --data '{"script": "uname -a"}'
  harness-manager task show 3f0c... --data-dir data --follow

Exit codes: `submit` 0 (the task id is printed); `show` 0 when the task SUCCEEDED, 1 when it is in
any other state; both 2 when the manager could not be asked (or bad arguments), 3 when there is no
task with that id.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

FINAL = {"SUCCEEDED", "FAILED", "ERRORED", "EXPIRED", "ABORTED"}
HTTP_TIMEOUT_S = 10.0
FOLLOW_INTERVAL_S = 0.5
EXIT_TROUBLE = 2
EXIT_NO_SUCH_TASK = 3


class CliError(Exception):
    """Something the user must fix; the message says what."""


class NoSuchTask(CliError):
    """The manager answered 404 for the task id."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="task_command", required=True)
    fmt = argparse.RawDescriptionHelpFormatter
    data_dir_help = "the manager's data dir (its delegate.env holds the URL and API key)"
    submit = sub.add_parser("submit", help="submit a task; prints its id", description=__doc__,
                            formatter_class=fmt)
    submit.add_argument("--data-dir", type=Path, required=True, help=data_dir_help)
    submit.add_argument("--type", dest="task_type", required=True, help="e.g. SHELL_SCRIPT")
    submit.add_argument("--data", required=True, help="the task data as a JSON object")
    submit.add_argument("--selector", action="append", default=[], dest="selectors",
                        help="a delegate tag, name or group name (repeatable)")
    submit.add_argument("--timeout-ms", type=int, default=600_000)
    submit.add_argument("--group", default=None, help="only delegates of this group")
    show = sub.add_parser("show", help="print a task's status and log", description=__doc__,
                          formatter_class=fmt)
    show.add_argument("task_id")
    show.add_argument("--data-dir", type=Path, required=True, help=data_dir_help)
    show.add_argument("--follow", action="store_true", help="follow until a final state")


def read_env(data_dir: Path) -> dict[str, str]:
    path = data_dir / "delegate.env"
    try:
        text = path.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {path}: is a manager running with --data-dir "
                       f"{data_dir}?") from exc
    env = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if "MANAGER_HOST_AND_PORT" not in env or "DEVSTACK_API_KEY" not in env:
        raise CliError(f"{path} lacks MANAGER_HOST_AND_PORT or DEVSTACK_API_KEY")
    return env


def call(env: dict[str, str], method: str, path: str, body: Any = None) -> Any:
    url = env["MANAGER_HOST_AND_PORT"].rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    if not url.startswith(("http://", "https://")):
        raise CliError(f"MANAGER_HOST_AND_PORT must be an http(s) URL, not {url!r}")
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {env['DEVSTACK_API_KEY']}",
        "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
            return json.loads(resp.read())["resource"]
    except urllib.error.HTTPError as exc:
        try:
            messages = json.loads(exc.read()).get("responseMessages") or []
            detail = "; ".join(m.get("message", "") for m in messages) or exc.reason
        except ValueError:
            detail = exc.reason
        if exc.code == 404 and "/tasks/" in path:
            raise NoSuchTask(f"no task {path.split('/tasks/', 1)[1].split('?')[0]!r} in the "
                             f"manager at {env['MANAGER_HOST_AND_PORT']} ({detail})") from exc
        raise CliError(f"{method} {path}: {exc.code} {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise CliError(f"cannot reach the manager at {env['MANAGER_HOST_AND_PORT']}: {exc}") from exc


def submit(args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.data)
    except ValueError as exc:
        raise CliError(f"--data is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CliError("--data must be a JSON object, e.g. '{\"script\": \"echo hi\"}'")
    env = read_env(args.data_dir)
    body = {"taskType": args.task_type, "data": data, "selectors": args.selectors,
            "timeoutMs": args.timeout_ms, "delegateGroupName": args.group}
    print(call(env, "POST", "/api/setup/tasks", body)["taskId"])
    return 0


def show(args: argparse.Namespace) -> int:
    env = read_env(args.data_dir)
    since = -1
    status = ""
    while True:
        task = call(env, "GET", f"/api/setup/tasks/{args.task_id}?sinceSeq={since}")
        for line in task["logLines"]:
            print(f"{line['level']:5} {line['message']}")
        since = task["nextSeq"]
        if task["status"] != status:
            status = task["status"]
            print(f"status: {status}" + (f" ({task['errorMessage']})"
                                         if task.get("errorMessage") else ""))
        if not args.follow or status in FINAL:
            break
        sys.stdout.flush()
        time.sleep(FOLLOW_INTERVAL_S)
    return 0 if status == "SUCCEEDED" else 1


def run(args: argparse.Namespace) -> int:
    try:
        return submit(args) if args.task_command == "submit" else show(args)
    except NoSuchTask as exc:
        print(f"harness-manager task: {exc}", file=sys.stderr)
        return EXIT_NO_SUCH_TASK
    except CliError as exc:
        print(f"harness-manager task: {exc}", file=sys.stderr)
        return EXIT_TROUBLE
    except KeyboardInterrupt:
        return 130
