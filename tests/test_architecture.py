"""The layering rules: delegate/, watcher/ and manager/ never import each other; no product part
imports devstack/; protocol/ belongs to no side."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import REPO


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 3 kept, 0 broken" in done.stdout


def test_delegate_does_not_load_boto3_at_start() -> None:
    code = ("import sys, delegate.agent, delegate.tasks.runner;"
            "from delegate.tasks import registry; registry.load_builtin_types();"
            "print('boto3' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "False", done.stderr
