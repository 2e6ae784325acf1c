"""The install guide, step by step: download the ECS task spec from the (real, local) manager,
extract it with tar, and run the guide's exact AWS CLI commands against the local AWS, in both
modes. Then the one-command installer, twice in a row."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from protocol import taskspec
from tests.delegate.install.conftest import Aws, Cluster
from tests.support import REPO, Manager

pytestmark = pytest.mark.timeout(90)

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/harness-delegate:1.0.0"


def download(manager: Manager, query: str, key: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    req = urllib.request.Request(f"{manager.url}/api/setup/delegates/ecs-task-spec?{query}",
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def fetch_spec(manager: Manager, tmp_path: Path, awsvpc: bool) -> Path:
    """Download and `tar -zxvf` it as the guide says; returns the extracted folder."""
    query = (f"accountId={manager.account_id}&delegateGroupName=ecs-group&image={IMAGE}"
             f"&awsvpc={'true' if awsvpc else 'false'}")
    status, headers, body = download(manager, query, manager.env["DEVSTACK_API_KEY"])
    assert status == 200, body[:300]
    assert headers["Content-Disposition"] == 'attachment; filename="harness-delegate-ecs.tar.gz"'
    archive = tmp_path / "harness-delegate-ecs.tar.gz"
    archive.write_bytes(body)
    subprocess.run(["tar", "-zxvf", archive.name], cwd=tmp_path, check=True, capture_output=True)
    return tmp_path / "harness-delegate-ecs"


def run_cli(cli: Path, aws: Aws, cwd: Path, *args: str) -> Any:
    result = subprocess.run([str(cli), *args], cwd=cwd, env=aws.env(cwd), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


@pytest.mark.parametrize("awsvpc", [False, True], ids=["ec2-bridge", "awsvpc-fargate"])
def test_the_guides_aws_cli_steps_work_with_the_download(
        awsvpc: bool, manager: Manager, aws: Aws, aws_cli: Path, cluster: Cluster,
        tmp_path: Path) -> None:
    folder = fetch_spec(manager, tmp_path, awsvpc)
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.txt", "ecs-task-spec.json", "service-spec-for-awsvpc-mode.json"]
    spec = json.loads((folder / "ecs-task-spec.json").read_text())
    env = taskspec.env_of(spec)
    assert env["ACCOUNT_ID"] == manager.account_id
    assert env["DELEGATE_TOKEN"] == manager.env["DELEGATE_TOKEN"]
    assert env["MANAGER_HOST_AND_PORT"] == manager.url
    assert env["DELEGATE_GROUP_NAME"] == "ecs-group"
    assert spec.get("networkMode") == ("awsvpc" if awsvpc else "bridge")

    # Step 2
    registered = run_cli(aws_cli, aws, folder, "ecs", "register-task-definition",
                         "--cli-input-json", "file://ecs-task-spec.json")
    family = "harness-delegate-task-spec" + ("-fargate" if awsvpc else "")
    assert registered["taskDefinition"]["family"] == family
    arns = run_cli(aws_cli, aws, folder, "ecs", "list-task-definitions")["taskDefinitionArns"]
    assert any(f":task-definition/{family}:" in arn for arn in arns)
    # Step 3
    service_name = f"delegate-{'vpc' if awsvpc else 'ec2'}"
    if awsvpc:  # the service spec, with the cluster and networking filled in as its README says
        service_spec = json.loads((folder / "service-spec-for-awsvpc-mode.json").read_text())
        service_spec.update(cluster=cluster.name, serviceName=service_name)
        service_spec["networkConfiguration"]["awsvpcConfiguration"].update(
            subnets=[cluster.subnet], securityGroups=[cluster.security_group])
        (folder / "service-spec-for-awsvpc-mode.json").write_text(json.dumps(service_spec))
        created = run_cli(aws_cli, aws, folder, "ecs", "create-service", "--cli-input-json",
                          "file://service-spec-for-awsvpc-mode.json")
        assert created["service"]["launchType"] == "FARGATE"
    else:
        created = run_cli(aws_cli, aws, folder, "ecs", "create-service", "--service-name",
                          service_name, "--task-definition", "harness-delegate-task-spec",
                          "--cluster", cluster.name, "--desired-count", "1")
    assert created["service"]["status"] == "ACTIVE" and created["service"]["desiredCount"] == 1
    listed = run_cli(aws_cli, aws, folder, "ecs", "list-services", "--cluster", cluster.name)
    assert [a.rsplit("/", 1)[-1] for a in listed["serviceArns"]] == [service_name]


def test_download_needs_the_api_key_and_names_bad_input(manager: Manager) -> None:
    key = manager.env["DEVSTACK_API_KEY"]
    status, _, body = download(manager, "delegateGroupName=g")
    assert status == 401 and b"Bearer" in body
    status, _, body = download(manager, "delegateGroupName=g", key)  # no image, none configured
    assert status == 400 and b"image" in body and b"scripts/build-image --push" in body
    status, _, body = download(manager, "delegateGroupName=g&image=harness/delegate:latest", key)
    assert status == 400 and b"Docker Hub" in body
    status, _, body = download(manager, f"delegateGroupName=bad%20name&image={IMAGE}", key)
    assert status == 400 and b"delegate group name" in body
    status, _, body = download(manager, f"awsvpc=maybe&image={IMAGE}", key)
    assert status == 400 and b"awsvpc" in body
    status, _, body = download(manager, f"profile=nope&image={IMAGE}", key)
    assert status == 400 and b"profile" in body
    status, _, body = download(manager, f"accountId=someone-else&image={IMAGE}", key)
    assert status == 404
    for answer in (body,):
        assert manager.env["DELEGATE_TOKEN"].encode() not in answer


def test_delegates_page_links_the_install_form(manager: Manager) -> None:
    browser = manager.login()
    with browser.open(f"{manager.url}/ui/delegates", timeout=10) as resp:
        assert "/ui/install-delegate" in resp.read().decode()
    with browser.open(f"{manager.url}/ui/install-delegate", timeout=10) as resp:
        page = resp.read().decode()
    assert "ECS Task Spec" in page and "Use AWS VPC Mode" in page and "Delegate Group Name" in page
    assert "taskRoleArn" in page and "executionRoleArn" in page and "name='image'" in page
    url = (f"{manager.url}/ui/install-delegate/ecs-task-spec?delegateGroupName=g1&awsvpc=true"
           f"&image={IMAGE}")
    with browser.open(url, timeout=10) as resp:
        spec = taskspec.load_spec(resp.read(), "form download")
    assert spec["networkMode"] == "awsvpc" and taskspec.env_of(spec)["DELEGATE_GROUP_NAME"] == "g1"


def install_ecs(aws: Aws, home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "delegate", "install-ecs", *args], cwd=REPO,
                          env=aws.env(home, **env), capture_output=True, text=True, timeout=60)


def service(aws: Aws, cluster: str, name: str) -> dict[str, Any]:
    return aws.client("ecs").describe_services(cluster=cluster, services=[name])[  # type: ignore[no-any-return]
        "services"][0]


def test_install_ecs_from_the_download_twice(manager: Manager, aws: Aws, cluster: Cluster,
                                             tmp_path: Path) -> None:
    status, _, body = download(manager, f"delegateGroupName=ecs-group&image={IMAGE}",
                               manager.env["DEVSTACK_API_KEY"])
    assert status == 200
    archive = tmp_path / "harness-delegate-ecs.tar.gz"
    archive.write_bytes(body)
    args = ("--spec", str(archive), "--cluster", cluster.name, "--service-name", "delegate",
            "--desired-count", "2", "--wait-timeout-s", "30")

    first = install_ecs(aws, tmp_path, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "registered task definition harness-delegate-task-spec:" in first.stdout
    assert "service delegate: created" in first.stdout
    assert "2 delegate task(s) running" in first.stdout
    svc = service(aws, cluster.name, "delegate")
    assert svc["desiredCount"] == 2 and svc["runningCount"] == 2

    second = install_ecs(aws, tmp_path, *args)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "is current: not registered again" in second.stdout
    assert "unchanged" in second.stdout
    assert service(aws, cluster.name, "delegate")["taskDefinition"] == svc["taskDefinition"]
    for out in (first, second):
        assert manager.env["DELEGATE_TOKEN"] not in out.stdout + out.stderr


def test_install_ecs_from_the_environment_in_awsvpc_mode(manager: Manager, aws: Aws,
                                                         cluster: Cluster, tmp_path: Path) -> None:
    env = {k: manager.env[k] for k in ("ACCOUNT_ID", "DELEGATE_TOKEN", "MANAGER_HOST_AND_PORT")}
    args = ("--cluster", cluster.name, "--service-name", "fargate-delegate", "--awsvpc",
            "--subnets", cluster.subnet, "--security-groups", cluster.security_group,
            "--delegate-group-name", "fargate", "--image", IMAGE, "--wait-timeout-s", "30")
    first = install_ecs(aws, tmp_path, *args, **env)
    assert first.returncode == 0, first.stdout + first.stderr
    svc = service(aws, cluster.name, "fargate-delegate")
    assert svc["launchType"] == "FARGATE" and svc["runningCount"] == 1
    td = aws.client("ecs").describe_task_definition(taskDefinition=svc["taskDefinition"])[
        "taskDefinition"]
    assert td["networkMode"] == "awsvpc" and td["executionRoleArn"].endswith(":role/ecsTaskExecutionRole")
    assert ":000000000000:" not in td["executionRoleArn"]  # filled in from sts get-caller-identity

    # a changed input (another group) registers a new revision and rolls the service to it
    second = install_ecs(aws, tmp_path, *args[:-6], "--delegate-group-name", "fargate-2",
                         "--image", IMAGE, "--wait-timeout-s", "30", **env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "service fargate-delegate: updated" in second.stdout
    assert service(aws, cluster.name, "fargate-delegate")["taskDefinition"] != svc["taskDefinition"]


def test_install_ecs_explains_what_is_missing(aws: Aws, tmp_path: Path) -> None:
    missing = install_ecs(aws, tmp_path, "--cluster", "c", "--service-name", "s")
    assert missing.returncode == 3
    assert "ACCOUNT_ID, DELEGATE_TOKEN, MANAGER_HOST_AND_PORT not set" in missing.stderr
    nofile = install_ecs(aws, tmp_path, "--spec", str(tmp_path / "nope.json"), "--cluster", "c",
                         "--service-name", "s")
    assert nofile.returncode == 3 and "cannot read it" in nofile.stderr
    spec = tmp_path / "ecs-task-spec.json"
    spec.write_text(json.dumps(taskspec.task_spec(taskspec.SpecInputs(
        account_id="a", delegate_token="0" * 32, manager_host_and_port="http://127.0.0.1:1",
        image=IMAGE))))
    nocluster = install_ecs(aws, tmp_path, "--spec", str(spec), "--cluster", "no-such-cluster",
                            "--service-name", "s")
    assert nocluster.returncode == 1
    assert "cluster 'no-such-cluster' not found" in nocluster.stderr
    usage = install_ecs(aws, tmp_path, "--cluster", "c")
    assert usage.returncode == 2 and "--service-name" in usage.stderr


def test_both_modes_use_their_own_family_so_the_guides_ec2_service_still_works(
        manager: Manager, aws: Aws, aws_cli: Path, cluster: Cluster, tmp_path: Path) -> None:
    """Registering the Fargate spec after the EC2 one must not make the guide's EC2 create-service
    fail ("Network Configuration must be provided when networkMode 'awsvpc' is specified")."""
    (tmp_path / "bridge").mkdir()
    (tmp_path / "fargate").mkdir()
    bridge = fetch_spec(manager, tmp_path / "bridge", awsvpc=False)
    fargate = fetch_spec(manager, tmp_path / "fargate", awsvpc=True)
    for folder in (bridge, fargate):
        run_cli(aws_cli, aws, folder, "ecs", "register-task-definition", "--cli-input-json",
                "file://ecs-task-spec.json")
    created = run_cli(aws_cli, aws, bridge, "ecs", "create-service", "--service-name", "ec2",
                      "--task-definition", "harness-delegate-task-spec", "--cluster",
                      cluster.name, "--desired-count", "1")
    assert created["service"]["status"] == "ACTIVE"


@pytest.mark.parametrize("awsvpc", [False, True], ids=["ec2-bridge", "awsvpc-fargate"])
def test_each_readme_one_liner_works_as_written(awsvpc: bool, manager: Manager, aws: Aws,
                                                cluster: Cluster, tmp_path: Path) -> None:
    folder = fetch_spec(manager, tmp_path, awsvpc)
    readme = (folder / "README.txt").read_text()
    lines = [line.strip() for line in readme.splitlines()
             if line.strip().startswith("harness-delegate install-ecs")]
    assert len(lines) == 1, readme
    filled = (lines[0].replace("<cluster>", cluster.name).replace("<service>", "one-liner")
              .replace("<subnet-id>", cluster.subnet)
              .replace("<security-group-id>", cluster.security_group))
    argv = shlex.split(filled)
    assert argv[:2] == ["harness-delegate", "install-ecs"]
    done = subprocess.run([sys.executable, "-m", "delegate", *argv[1:], "--wait-timeout-s", "30"],
                          cwd=folder, env=aws.env(tmp_path), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 task(s) running" in done.stdout
    assert "Only the ECS tasks were waited for" in done.stdout  # honest about what it checked


def test_install_ecs_warns_about_a_loopback_manager_and_an_empty_bridge_cluster(
        manager: Manager, aws: Aws, cluster: Cluster, tmp_path: Path) -> None:
    folder = fetch_spec(manager, tmp_path, awsvpc=False)
    done = install_ecs(aws, tmp_path, "--spec", str(folder / "ecs-task-spec.json"), "--cluster",
                       cluster.name, "--service-name", "warned", "--no-wait")
    assert done.returncode == 0, done.stderr
    assert "warning: MANAGER_HOST_AND_PORT is http://127.0.0.1:" in done.stderr
    assert "loopback" in done.stderr
    assert f"cluster {cluster.name} has no container instances" in done.stderr
    assert "Not waited for" in done.stdout


def test_install_ecs_refuses_dockers_hub_delegate_and_latest(manager: Manager, aws: Aws,
                                                            tmp_path: Path) -> None:
    env = {k: manager.env[k] for k in ("ACCOUNT_ID", "DELEGATE_TOKEN", "MANAGER_HOST_AND_PORT")}
    for image in ("harness/delegate:latest", "registry.example.com/harness-delegate:latest"):
        refused = install_ecs(aws, tmp_path, "--cluster", "c", "--service-name", "s", "--image",
                              image, **env)
        assert refused.returncode == 3, refused.stderr
        assert "scripts/build-image --push" in refused.stderr
    none = install_ecs(aws, tmp_path, "--cluster", "c", "--service-name", "s", **env)
    assert none.returncode == 3 and "--image: none given" in none.stderr


def test_install_ecs_creates_the_roles_when_missing_and_reuses_them(
        manager: Manager, aws: Aws, cluster: Cluster, tmp_path: Path) -> None:
    folder = fetch_spec(manager, tmp_path, awsvpc=True)
    args = ("--spec", str(folder / "ecs-task-spec.json"), "--cluster", cluster.name,
            "--service-name", "roles", "--subnets", cluster.subnet, "--create-roles", "--no-wait")
    first = install_ecs(aws, tmp_path, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "created role HarnessDelegateTaskRole" in first.stdout
    iam = aws.client("iam")
    policy = iam.get_role_policy(RoleName="HarnessDelegateTaskRole", PolicyName="HarnessECS")
    assert "ecs:UpdateService" in json.dumps(policy["PolicyDocument"])
    attached = iam.list_attached_role_policies(RoleName="ecsTaskExecutionRole")["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["AmazonECSTaskExecutionRolePolicy"]
    td = aws.client("ecs").describe_task_definition(
        taskDefinition=service(aws, cluster.name, "roles")["taskDefinition"])["taskDefinition"]
    assert td["taskRoleArn"].endswith(":role/HarnessDelegateTaskRole")
    assert td["executionRoleArn"].endswith(":role/ecsTaskExecutionRole")
    again = install_ecs(aws, tmp_path, *args)
    assert again.returncode == 0 and "role HarnessDelegateTaskRole exists" in again.stdout
