"""The image, built once per test session and shared by every test that runs it (the container
tests and the end-to-end install guide on the local ECS)."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from tests.support import REPO

IMAGE = "harness/delegate"
BUILD = REPO / "scripts" / "build-image"


@pytest.fixture(scope="session")
def podman() -> list[str]:
    """Build the image (cached layers make a second build quick) and return the podman command."""
    env = {**os.environ, "FORCE_BUILDAH": "1"}
    result = subprocess.run([str(BUILD)], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=420)
    assert result.returncode == 0, f"scripts/build-image failed:\n{result.stderr[-4000:]}"
    out = subprocess.run([str(BUILD), "--print-podman"], cwd=REPO, capture_output=True, text=True,
                         check=True, timeout=30).stdout
    return shlex.split(out)


def run_options() -> list[str]:
    """`podman ... run` with the options this host needs (runtime, limits)."""
    out = subprocess.run([str(BUILD), "--print-run"], cwd=REPO, capture_output=True, text=True,
                         check=True, timeout=30).stdout
    return shlex.split(out)
