"""Every console script and subcommand answers --help with its usage, the environment it reads,
examples and exit codes; wrong input gets the documented exit code."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import REPO, Manager, python_env


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = python_env()
    for name in ("ACCOUNT_ID", "DELEGATE_TOKEN", "MANAGER_HOST_AND_PORT"):
        env.pop(name, None)
    return subprocess.run(list(args), cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)


PY = sys.executable


@pytest.mark.parametrize("command", [
    (PY, "-m", "delegate", "--help"),
    (PY, "-m", "delegate", "run", "--help"),
    (PY, "-m", "delegate", "install-ecs", "--help"),
    (PY, "-m", "devstack", "--help"),
    (PY, "-m", "devstack", "task", "submit", "--help"),
    (PY, "-m", "devstack", "task", "show", "--help"),
    (PY, "-m", "devstack", "aws", "--help"),
    (PY, "-m", "devstack", "publish", "--help"),
    (PY, "-m", "devstack.demo", "--help"),
    (PY, "-m", "bench", "--help"),
    ("scripts/bootstrap", "--help"),
], ids=lambda c: " ".join(c[2:] if c[0] == PY else c))
def test_help_has_usage_environment_examples_and_exit_codes(command: tuple[str, ...]) -> None:
    done = run(*command)
    text = done.stdout.lower()
    assert done.returncode == 0, done.stderr
    assert "usage" in text or "scripts/bootstrap" in text
    assert "environment" in text or "reads" in text
    assert "example" in text or "scripts/bootstrap demo" in text
    assert "exit" in text


def test_delegate_help_lists_its_variables_and_run_help_does_not_start_it() -> None:
    text = run(PY, "-m", "delegate", "--help").stdout
    for name in ("ACCOUNT_ID", "DELEGATE_TOKEN", "MANAGER_HOST_AND_PORT", "POLL_FOR_TASKS",
                 "DELEGATE_TYPE", "install-ecs"):
        assert name in text
    done = run(PY, "-m", "delegate", "run", "--help")
    assert done.returncode == 0 and "invalid delegate configuration" not in done.stderr
    assert run(PY, "-m", "delegate", "bogus").returncode == 2
    assert run(PY, "-m", "bench", "no-such-suite").returncode == 2
    assert run("scripts/bootstrap", "no-such-set").returncode == 2


def test_an_empty_environment_names_every_variable_in_one_line() -> None:
    done = run(PY, "-m", "delegate", "run")
    assert done.returncode == 3
    assert len(done.stderr.strip().splitlines()) == 1
    for name in ("ACCOUNT_ID", "MANAGER_HOST_AND_PORT", "DELEGATE_TOKEN"):
        assert name in done.stderr


@pytest.mark.timeout(60)
def test_task_show_of_an_unknown_id_exits_3(manager: Manager) -> None:
    done = run(PY, "-m", "devstack", "task", "show", "no-such-task",
               "--data-dir", str(manager.data_dir))
    assert done.returncode == 3, done.stderr
    assert "no task 'no-such-task'" in done.stderr
    unreachable = run(PY, "-m", "devstack", "task", "show", "x", "--data-dir", "/nonexistent")
    assert unreachable.returncode == 2
