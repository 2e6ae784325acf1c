"""The README's first command: the demo runs the main job on the local stack and exits 0."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import REPO, python_env


@pytest.mark.timeout(120)
def test_demo_passes_end_to_end() -> None:
    done = subprocess.run([sys.executable, "-m", "devstack.demo"], cwd=REPO, env=python_env(),
                          capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "[FAIL]" not in done.stdout
    assert "rolling deploy of sample:2 through the manager" in done.stdout
    assert "demo passed" in done.stdout
