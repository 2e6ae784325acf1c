"""Config edges: each bad environment exits 3 with one line naming the variable, no traceback, and
never echoes a credential it was given."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, python_env

pytestmark = pytest.mark.timeout(60)
TOKEN = "0123456789abcdef0123456789abcdef"


def run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = python_env(ACCOUNT_ID="acct1", DELEGATE_TOKEN=TOKEN,
                      MANAGER_HOST_AND_PORT="http://127.0.0.1:9", DELEGATE_HEALTH_PORT="0",
                      DELEGATE_WORK_DIR=str(tmp_path / "work"), LOG_FORMAT="json")
    base.update(env)
    return subprocess.run([sys.executable, "-m", "delegate"], env=base, cwd=REPO, text=True,
                          capture_output=True, timeout=30, check=False)


CASES = [
    ("MANAGER_HOST_AND_PORT", "http://admin:s3cretPass@127.0.0.1:9", "s3cretPass"),
    ("MANAGER_HOST_AND_PORT", "https://user@manager.example.com", None),
    ("MANAGER_HOST_AND_PORT", "http://127.0.0.1:notaport", None),
    ("DELEGATE_WORK_DIR", "/proc/1/x", None),
    ("DELEGATE_HEARTBEAT_INTERVAL_S", "inf", None),
    ("DELEGATE_POLL_INTERVAL_S", "1e-9", None),
    ("DELEGATE_REQUEST_TIMEOUT_S", "nan", None),
    ("DELEGATE_SHUTDOWN_BUDGET_S", "1e300", None),
    ("DELEGATE_KEEPALIVE_INTERVAL_S", "-5", None),
    ("DELEGATE_RESOURCE_THRESHOLD", "nan", None),
    ("DELEGATE_TASK_CAPACITY", "0", None),
]


@pytest.mark.parametrize(("name", "value", "secret"), CASES,
                         ids=[f"{n}={v[:20]}" for n, v, _ in CASES])
def test_bad_setting_exits_3_naming_it(tmp_path: Path, name: str, value: str,
                                       secret: str | None) -> None:
    done = run(tmp_path, **{name: value})
    assert done.returncode == 3, (done.returncode, done.stdout[-500:], done.stderr[-500:])
    assert name in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    if secret is not None:
        assert secret not in done.stderr + done.stdout


def test_a_work_dir_that_is_a_file_exits_3(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = run(tmp_path, DELEGATE_WORK_DIR=str(blocker / "work"))
    assert done.returncode == 3 and "DELEGATE_WORK_DIR" in done.stderr, done.stderr
