"""The README's first command: the demo runs the main job on the local stack and exits 0."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.demo import serve_banner
from tests.support import REPO, python_env


@pytest.mark.timeout(120)
def test_demo_passes_end_to_end_and_keeps_its_directory_when_asked() -> None:
    done = subprocess.run([sys.executable, "-m", "devstack.demo", "--keep"], cwd=REPO,
                          env=python_env(), capture_output=True, text=True, timeout=110)
    kept = re.search(r"^kept: (\S+)", done.stdout, flags=re.M)
    try:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        assert "[FAIL]" not in done.stdout
        assert "rolling deploy of sample:2 through the manager" in done.stdout
        assert "manager at https://127.0.0.1:" in done.stdout  # the real manager, over TLS
        assert "/ui/delegates shows Harness-ECS-Delegate_0 Connected" in done.stdout  # logged in
        assert "demo passed" in done.stdout
        assert "DELEGATE_RESOURCE_THRESHOLD=100" in done.stdout, "the demo says why it differs from the spec"
        assert kept is not None, done.stdout[-2000:]
        base = Path(kept.group(1))
        assert '"manager.registered"' in (base / "delegate.log").read_text()
        assert (base / "manager.log").stat().st_size > 0
        assert "DEVSTACK_API_KEY=" in (base / "manager" / "delegate.env").read_text()
    finally:
        if kept is not None:
            shutil.rmtree(kept.group(1), ignore_errors=True)


def test_serve_says_how_to_reach_the_stack(tmp_path: Path) -> None:
    text = serve_banner("http://127.0.0.1:5000", tmp_path, kept=False)
    assert "http://127.0.0.1:5000/ui/delegates" in text
    assert f"data dir:       {tmp_path}" in text and "--keep keeps it" in text
    assert f"DEVSTACK_API_KEY in {tmp_path / 'delegate.env'}" in text
    assert f"devstack task submit --data-dir {tmp_path} --type SHELL_SCRIPT" in text
