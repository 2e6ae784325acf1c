"""The install guide end to end on one machine, as an operator follows it: build the image, push it
to a registry (Debian's docker-registry on loopback), download the ECS task spec naming it, run the
guide's `aws ecs` commands verbatim against the local ECS, which runs the task's container for real
(podman, host networking), and see the delegate Connected in its group on the manager; scale the
service to 0 and see it disappear. Both modes: EC2 bridge and AWS VPC (Fargate).

Each step's time is printed (`pytest -s`): information for people, not a check.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from delegate import __version__
from devstack.registry import LocalRegistry
from protocol import taskspec
from tests.delegate.install.conftest import Aws, local_aws, make_cluster
from tests.delegate.install.conftest import aws_cli as aws_cli
from tests.image.conftest import BUILD, IMAGE, run_options
from tests.support import REPO, Manager, wait_until

pytestmark = pytest.mark.skipif(os.environ.get("SKIP_IMAGE_TESTS") == "1",
                                reason="SKIP_IMAGE_TESTS=1 was set explicitly")

STEP_TIMES: list[tuple[str, float]] = []


class Steps:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.t = time.monotonic()

    def done(self, step: str) -> None:
        now = time.monotonic()
        STEP_TIMES.append((f"{self.mode}: {step}", now - self.t))
        print(f"[guide {self.mode}] {step}: {now - self.t:.1f} s", flush=True)
        self.t = now


@pytest.fixture(scope="module")
def pushed(podman: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The image in a registry on loopback: `scripts/build-image --push` (the build is cached)."""
    started = time.monotonic()
    with LocalRegistry(tmp_path_factory.mktemp("registry")) as registry:
        STEP_TIMES.append(("registry start", time.monotonic() - started))
        started = time.monotonic()
        result = subprocess.run([str(BUILD), "--push", f"{registry.address}/{IMAGE}"], cwd=REPO,
                                env={**os.environ, "FORCE_BUILDAH": "1"}, capture_output=True,
                                text=True, timeout=420)
        assert result.returncode == 0, result.stderr[-3000:]
        STEP_TIMES.append(("build (cached) + push", time.monotonic() - started))
        reference = result.stdout.strip().splitlines()[-1]
        assert reference == f"{registry.address}/{IMAGE}:{__version__}"
        yield reference
    print("\nstep times of the guide run:\n" + "\n".join(f"  {step}: {s:.1f} s"
                                                         for step, s in STEP_TIMES))


@pytest.fixture(scope="module")
def ecs(podman: list[str], pushed: str) -> Iterator[Aws]:
    """The local AWS, running the tasks' containers with the image build's podman storage."""
    run = run_options()
    run_opts = run[run.index("run") + 1:]
    with local_aws("--run-containers", "--podman", shlex.join(podman),
                   "--podman-run-options", shlex.join(run_opts),
                   "--container-port-env", "DELEGATE_HEALTH_PORT") as started:
        yield started


def cli(program: Path, aws: Aws, cwd: Path, *args: str) -> Any:
    result = subprocess.run([str(program), *args], cwd=cwd, env=aws.env(cwd), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def shown(manager: Manager, group: str) -> bool:
    """The group shows a Connected delegate on the manager's Delegates page (logged in)."""
    with manager.login().open(f"{manager.url}/ui/delegates", timeout=10) as resp:
        page = resp.read().decode()
    counts = re.search(re.escape(group) + r" \((\d+)/\d+ connected\)", page)
    return counts is not None and int(counts.group(1)) >= 1


@pytest.mark.timeout(300)
@pytest.mark.parametrize("awsvpc", [False, True], ids=["ec2-bridge", "awsvpc-fargate"])
def test_the_guide_end_to_end_brings_a_connected_delegate(
        awsvpc: bool, pushed: str, ecs: Aws, aws_cli: Path, manager: Manager,
        podman: list[str], tmp_path: Path) -> None:
    steps = Steps("awsvpc" if awsvpc else "bridge")
    group = f"guide-{'fargate' if awsvpc else 'ec2'}"
    cluster = make_cluster(ecs)
    # Install Delegate > ECS Task Spec, with the image we pushed
    query = (f"accountId={manager.account_id}&delegateGroupName={group}&image={pushed}"
             f"&awsvpc={'true' if awsvpc else 'false'}")
    req = urllib.request.Request(f"{manager.url}/api/setup/delegates/ecs-task-spec?{query}",
                                 headers={"Authorization": f"Bearer {manager.env['DEVSTACK_API_KEY']}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        (tmp_path / taskspec.ARCHIVE_NAME).write_bytes(resp.read())
    subprocess.run(["tar", "-zxvf", taskspec.ARCHIVE_NAME], cwd=tmp_path, check=True,
                   capture_output=True)
    folder = tmp_path / taskspec.FOLDER
    spec = json.loads((folder / taskspec.TASK_SPEC_FILE).read_text())
    assert spec["containerDefinitions"][0]["image"] == pushed
    steps.done("download + tar -zxvf")

    cli(aws_cli, ecs, folder, "ecs", "register-task-definition", "--cli-input-json",
        "file://ecs-task-spec.json")
    cli(aws_cli, ecs, folder, "ecs", "list-task-definitions")
    steps.done("register-task-definition + list-task-definitions")
    service = "ecs-tutorial"
    if awsvpc:
        service_spec = json.loads((folder / taskspec.SERVICE_SPEC_FILE).read_text())
        service_spec.update(cluster=cluster.name, serviceName=service)
        service_spec["networkConfiguration"]["awsvpcConfiguration"].update(
            subnets=[cluster.subnet], securityGroups=[cluster.security_group])
        (folder / taskspec.SERVICE_SPEC_FILE).write_text(json.dumps(service_spec))
        cli(aws_cli, ecs, folder, "ecs", "create-service", "--cli-input-json",
            f"file://{taskspec.SERVICE_SPEC_FILE}")
    else:  # the guide's command, verbatim but for the cluster
        cli(aws_cli, ecs, folder, "ecs", "create-service", "--service-name", service,
            "--task-definition", "harness-delegate-task-spec", "--cluster", cluster.name,
            "--desired-count", "1")
    cli(aws_cli, ecs, folder, "ecs", "list-services", "--cluster", cluster.name)
    steps.done("create-service + list-services")

    # ECS pulls the image from the registry and runs the container: the delegate connects
    delegate = wait_until(lambda: manager.delegate(groupName=group, status="CONNECTED"), 120,
                          f"a delegate of group {group} CONNECTED", every=0.5)
    assert wait_until(lambda: shown(manager, group), 10, "the delegate on the Delegates page")
    steps.done("task running, delegate Connected on the manager")
    task_arns = ecs.client("ecs").list_tasks(cluster=cluster.name, serviceName=service)["taskArns"]
    containers = subprocess.run([*podman, "ps", "--format", "{{.Names}} {{.Image}}"],
                                capture_output=True, text=True, timeout=30).stdout
    task_ids = [arn.rsplit("/", 1)[-1] for arn in task_arns]
    assert any(t in containers and pushed in containers for t in task_ids), containers
    if not awsvpc:
        assert delegate["hostName"].startswith("Harness-ECS-Delegate")

    # "When an ECS Delegate is stopped or offline, it will disappear from the Delegate list."
    cli(aws_cli, ecs, folder, "ecs", "update-service", "--cluster", cluster.name, "--service",
        service, "--desired-count", "0")
    wait_until(lambda: manager.delegate(delegateId=delegate["delegateId"])["status"]
               == "DISCONNECTED", 90, "the delegate gone after scaling to 0", every=0.5)
    assert not shown(manager, group)
    wait_until(lambda: not any(t in subprocess.run(
        [*podman, "ps", "--all", "--format", "{{.Names}}"], capture_output=True, text=True,
        timeout=30).stdout for t in task_ids), 60, "the task's container removed")
    steps.done("scaled to 0: delegate gone, container removed")


def test_a_task_whose_image_was_never_pushed_fails_to_pull(pushed: str, ecs: Aws,
                                                           manager: Manager) -> None:
    """The fault: ECS cannot pull the image; the task stops with CannotPullContainerError."""
    cluster = make_cluster(ecs)
    missing = pushed.rsplit(":", 1)[0] + ":0.0.0-never-pushed"
    client = ecs.client("ecs")
    inputs = taskspec.SpecInputs(account_id=manager.account_id,
                                 delegate_token=manager.env["DELEGATE_TOKEN"],
                                 manager_host_and_port=manager.url, image=missing)
    client.register_task_definition(**taskspec.task_spec(inputs))
    arn = client.run_task(cluster=cluster.name, taskDefinition=taskspec.FAMILY)["tasks"][0]["taskArn"]

    def stopped() -> dict[str, Any] | None:
        task = client.describe_tasks(cluster=cluster.name, tasks=[arn])["tasks"][0]
        return task if task["lastStatus"] == "STOPPED" else None

    task = wait_until(stopped, 60, "the task STOPPED", every=0.5)
    assert task["stopCode"] == "TaskFailedToStart"
    assert "CannotPullContainerError" in task["stoppedReason"] and missing in task["stoppedReason"]



@pytest.mark.timeout(240)
def test_install_ecs_waits_until_the_delegate_is_connected(
        pushed: str, ecs: Aws, manager: Manager, tmp_path: Path) -> None:
    cluster = make_cluster(ecs)
    query = f"delegateGroupName=install-ecs&image={pushed}"
    req = urllib.request.Request(f"{manager.url}/api/setup/delegates/ecs-task-spec?{query}",
                                 headers={"Authorization": f"Bearer {manager.env['DEVSTACK_API_KEY']}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        (tmp_path / taskspec.ARCHIVE_NAME).write_bytes(resp.read())

    def install(api_key: str, service: str, count: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "delegate", "install-ecs", "--spec",
             str(tmp_path / taskspec.ARCHIVE_NAME), "--cluster", cluster.name, "--service-name",
             service, "--desired-count", str(count), "--wait-connected", "--wait-timeout-s", "120"],
            cwd=tmp_path, env=ecs.env(tmp_path, HARNESS_API_KEY=api_key), capture_output=True,
            text=True, timeout=200)

    refused = install("0" * 32, "wrong-key", 0)  # the fault: the manager refuses the key
    assert refused.returncode == 1 and "refused the API key" in refused.stderr, refused.stderr
    assert manager.delegate(groupName="install-ecs") is None
    done = install(manager.env["DEVSTACK_API_KEY"], "connected", 1)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Connected on the manager: Harness-ECS-Delegate_" in done.stdout
    assert manager.delegate(groupName="install-ecs", status="CONNECTED") is not None
    assert manager.env["DEVSTACK_API_KEY"] not in done.stdout + done.stderr
    for service in ("wrong-key", "connected"):
        ecs.client("ecs").delete_service(cluster=cluster.name, service=service, force=True)
