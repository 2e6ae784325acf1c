"""The ECS task spec download: `harness-delegate-ecs.tar.gz` with `ecs-task-spec.json`,
`service-spec-for-awsvpc-mode.json` and `README.txt`, filled with one account's values.

Same shape as the Harness download (family `harness-delegate-task-spec`, container `ecs-delegate`,
the task spec environment) in both of its modes, each with its own family (registering one must not
turn the other's service into a different network mode). The image is this project's, from the
registry it was pushed to (`protocol.images`: never Docker Hub's `harness/delegate`, never `latest`):

- EC2 bridge (the default): `requiresCompatibilities: ["EC2"]`, the hostname the user chose
  (default `Harness-ECS-Delegate`, which the manager turns into `Harness-ECS-Delegate_<seq>`), and a
  dynamic host port, so that several delegate tasks can share one container instance.
- AWS VPC mode (Fargate): `networkMode: awsvpc`, no hostname (Fargate refuses one), FARGATE
  compatibility, an execution role, a valid Fargate cpu/memory pair and awslogs.

Sized for this delegate, not the original's 6 GB: see `SIZING` (and the README text, which says
why). Where Harness's README asks the user to edit the spec for Fargate, this one is ready to use.
"""

from __future__ import annotations

import copy
import io
import json
import re
import tarfile
import time
from dataclasses import dataclass, field
from typing import Any

from protocol.auth import InvalidDelegateToken, normalize_token
from protocol.images import ImageError, check_image

FAMILY = "harness-delegate-task-spec"
FARGATE_FAMILY = "harness-delegate-task-spec-fargate"
CONTAINER = "ecs-delegate"
DEFAULT_HOSTNAME = "Harness-ECS-Delegate"
DELEGATE_PORT = 8080
ARCHIVE_NAME = "harness-delegate-ecs.tar.gz"
FOLDER = "harness-delegate-ecs"
TASK_SPEC_FILE = "ecs-task-spec.json"
SERVICE_SPEC_FILE = "service-spec-for-awsvpc-mode.json"
README_FILE = "README.txt"
DEFAULT_REGION = "us-east-1"
DEFAULT_EXECUTION_ROLE = "ecsTaskExecutionRole"
LOG_GROUP = "/ecs/harness-delegate"
#: stands in for the AWS account id in ARNs until the user (or install-ecs) fills it in
AWS_ACCOUNT_PLACEHOLDER = "000000000000"

#: Fargate's valid (cpu units, memory MiB) pairs, from AWS's task size table
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: (1024, 2048, 3072, 4096),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
}


@dataclass(frozen=True)
class Sizing:
    """Task and container size. Why these numbers: README_SIZING below."""

    task_cpu: int = 256
    task_memory_mib: int = 512
    #: soft reservation ECS packs instances by (bridge mode); the hard limit is the task memory
    container_reservation_mib: int = 256


SIZING = Sizing()

README_SIZING = """\
Why 512 MiB and not 6 GB: the Java delegate needs a 6 GB task (an 8 GB host per delegate). This
delegate and its watcher are two Python processes that idle at about 85 MiB together (measured
in the image: watcher 22 MiB, delegate 63 MiB resident), and ECS work is API calls, not
builds. 512 MiB is the hard limit (the smallest Fargate size for 0.25 vCPU) with 256 MiB
reserved on EC2, so a t3.small can host several delegates. Raise `memory` (and for
Fargate `cpu`, keeping a valid pair) if your delegate profile or shell tasks run heavy tools."""

_NO_TASK_ROLE = ("not set: the delegate gets no AWS permissions; give it a role with the HarnessECS "
                 "policy (install-ecs --task-role-arn ARN, or --create-roles)")
_TOKEN_HELP = "the delegate token is 32 hex characters (Setup > Delegates > Tokens)"  # noqa: S105


class SpecError(ValueError):
    """An input the spec cannot be made from; the message names it and says what to give."""


@dataclass(frozen=True)
class SpecInputs:
    """What the user chose in "Install Delegate > ECS Task Spec", plus the account's values."""

    account_id: str
    delegate_token: str = field(repr=False)
    manager_host_and_port: str
    #: REGISTRY/REPO:TAG where this project's image was pushed (protocol.images.check_image)
    image: str
    delegate_group_name: str | None = None
    profile_id: str | None = None
    hostname: str | None = None
    awsvpc: bool = False
    region: str = DEFAULT_REGION
    aws_account_id: str | None = None
    execution_role_arn: str | None = None
    #: the role the delegate's AWS calls run as (HarnessECS policy); none: the instance's role (EC2)
    task_role_arn: str | None = None
    delegate_storage_url: str | None = None
    watcher_storage_url: str | None = None
    poll_for_tasks: bool = False
    sizing: Sizing = SIZING
    extra_env: tuple[tuple[str, str], ...] = ()

    def validated(self) -> SpecInputs:
        """Check every input; raise SpecError naming the first bad one and what to give."""
        if not self.account_id.strip():
            raise SpecError("account id: required (ACCOUNT_ID of your manager account)")
        try:
            token = normalize_token(self.delegate_token)
        except InvalidDelegateToken as exc:
            raise SpecError(f"delegate token: {_TOKEN_HELP}") from exc
        if not re.match(r"^https?://[^/\s]+", self.manager_host_and_port.strip()):
            raise SpecError("manager URL: expected http(s)://host[:port] (MANAGER_HOST_AND_PORT), "
                            f"got {self.manager_host_and_port[:100]!r}")
        if self.delegate_group_name is not None and not re.match(
                r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", self.delegate_group_name):
            raise SpecError(f"delegate group name {self.delegate_group_name[:80]!r}: use 1-64 "
                            "letters, digits, '.', '_' or '-', starting with a letter or digit")
        if self.hostname and self.awsvpc:
            raise SpecError("hostname: AWS VPC mode (Fargate) does not allow a container hostname; "
                            "leave it empty")
        if self.hostname and not re.match(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$", self.hostname):
            raise SpecError(f"hostname {self.hostname[:80]!r}: use letters, digits, '.' and '-' "
                            "(at most 63), or leave it empty for Harness-ECS-Delegate")
        if not re.match(r"^[a-z]{2}(-gov)?-[a-z]+-\d$", self.region):
            raise SpecError(f"region {self.region[:40]!r}: expected an AWS region such as us-east-1")
        if self.aws_account_id is not None and not re.match(r"^\d{12}$", self.aws_account_id):
            raise SpecError(f"AWS account id {self.aws_account_id[:40]!r}: expected 12 digits")
        for what, arn in (("execution role", self.execution_role_arn),
                          ("task role", self.task_role_arn)):
            if arn is not None and not re.match(r"^arn:aws[a-z-]*:iam::\d{12}:role/\S+$", arn):
                raise SpecError(f"{what} ARN {arn[:120]!r}: expected "
                                "arn:aws:iam::<12 digits>:role/<name>")
        try:
            image = check_image(self.image)
        except ImageError as exc:
            raise SpecError(str(exc)) from None
        s = self.sizing
        if self.awsvpc and s.task_memory_mib not in FARGATE_SIZES.get(s.task_cpu, ()):
            raise SpecError(f"size: {s.task_cpu} cpu units with {s.task_memory_mib} MiB is not a "
                            f"valid Fargate pair; valid: {_pairs()}")
        if not 128 <= s.container_reservation_mib <= s.task_memory_mib:
            raise SpecError("size: the memory reservation must be between 128 MiB and the task memory")
        return _replace(self, delegate_token=token, image=image,
                        manager_host_and_port=self.manager_host_and_port.strip().rstrip("/"))

    @property
    def execution_role(self) -> str:
        if self.execution_role_arn:
            return self.execution_role_arn
        account = self.aws_account_id or AWS_ACCOUNT_PLACEHOLDER
        return f"arn:aws:iam::{account}:role/{DEFAULT_EXECUTION_ROLE}"


def _replace(inputs: SpecInputs, **changes: Any) -> SpecInputs:
    from dataclasses import replace

    return replace(inputs, **changes)


def _pairs() -> str:
    return "; ".join(f"cpu {cpu}: memory {', '.join(map(str, mems))}"
                     for cpu, mems in FARGATE_SIZES.items())


def environment(inputs: SpecInputs) -> list[dict[str, str]]:
    """The container environment, all strings, only variables that have a value."""
    pairs: list[tuple[str, str | None]] = [
        ("ACCOUNT_ID", inputs.account_id),
        ("DELEGATE_TOKEN", inputs.delegate_token),
        ("MANAGER_HOST_AND_PORT", inputs.manager_host_and_port),
        ("DELEGATE_STORAGE_URL", inputs.delegate_storage_url),
        ("DELEGATE_CHECK_LOCATION", "delegateprod.txt"),
        ("WATCHER_STORAGE_URL", inputs.watcher_storage_url),
        ("WATCHER_CHECK_LOCATION", "watcherprod.txt"),
        ("DELEGATE_TYPE", "ECS"),
        ("DELEGATE_GROUP_NAME", inputs.delegate_group_name),
        ("DELEGATE_PROFILE", inputs.profile_id),
        ("DEPLOY_MODE", "KUBERNETES"),
        ("POLL_FOR_TASKS", "true" if inputs.poll_for_tasks else "false"),
        *inputs.extra_env,
    ]
    return [{"name": name, "value": value} for name, value in pairs if value]


def family(awsvpc: bool) -> str:
    return FARGATE_FAMILY if awsvpc else FAMILY


def _health_check() -> dict[str, Any]:
    # ECS ignores the image's HEALTHCHECK: the task definition must carry its own. The port comes
    # from DELEGATE_HEALTH_PORT when set (containers sharing the host's network need their own).
    probe = ("import os, urllib.request as u; u.urlopen('http://127.0.0.1:' + "
             f"os.environ.get('DELEGATE_HEALTH_PORT', '{DELEGATE_PORT}') + '/health', timeout=4)")
    return {"command": ["CMD", "python3", "-c", probe], "interval": 15, "timeout": 5,
            "retries": 3, "startPeriod": 30}


def task_spec(inputs: SpecInputs) -> dict[str, Any]:
    """`ecs-task-spec.json`: the RegisterTaskDefinition request (`--cli-input-json`)."""
    inputs = inputs.validated()
    s = inputs.sizing
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": inputs.image,
        "essential": True,
        "cpu": 0,
        "memory": s.task_memory_mib,
        "portMappings": [{"containerPort": DELEGATE_PORT, "protocol": "tcp",
                          "hostPort": DELEGATE_PORT if inputs.awsvpc else 0}],
        "environment": environment(inputs),
        "healthCheck": _health_check(),
        "stopTimeout": 30,
    }
    spec: dict[str, Any] = {"family": family(inputs.awsvpc)}
    if inputs.task_role_arn:
        spec["taskRoleArn"] = inputs.task_role_arn
    if inputs.awsvpc:
        container["logConfiguration"] = {
            "logDriver": "awslogs",
            "options": {"awslogs-group": LOG_GROUP, "awslogs-region": inputs.region,
                        "awslogs-stream-prefix": "delegate", "awslogs-create-group": "true"},
        }
        spec.update(networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
                    executionRoleArn=inputs.execution_role)
    else:
        container["hostname"] = inputs.hostname or DEFAULT_HOSTNAME
        container["memoryReservation"] = s.container_reservation_mib
        spec.update(networkMode="bridge", requiresCompatibilities=["EC2"])
        if inputs.execution_role_arn:  # optional on EC2: for `secrets` and awslogs
            spec["executionRoleArn"] = inputs.execution_role_arn
    spec.update(containerDefinitions=[container], cpu=str(s.task_cpu), memory=str(s.task_memory_mib))
    return spec


def service_spec(inputs: SpecInputs, *, cluster: str = "<cluster name>",
                 service_name: str = "harness-delegate", desired_count: int = 1,
                 subnets: tuple[str, ...] = ("<subnet-id>",),
                 security_groups: tuple[str, ...] = ("<security-group-id>",),
                 assign_public_ip: bool = False) -> dict[str, Any]:
    """`service-spec-for-awsvpc-mode.json`: the CreateService request for AWS VPC mode (Fargate)."""
    inputs = inputs.validated()
    return {
        "cluster": cluster,
        "serviceName": service_name,
        "taskDefinition": FARGATE_FAMILY,
        "desiredCount": desired_count,
        "launchType": "FARGATE",
        "networkConfiguration": {"awsvpcConfiguration": {
            "subnets": list(subnets), "securityGroups": list(security_groups),
            "assignPublicIp": "ENABLED" if assign_public_ip else "DISABLED"}},
        "deploymentConfiguration": {
            "maximumPercent": 200, "minimumHealthyPercent": 100,
            "deploymentCircuitBreaker": {"enable": True, "rollback": True}},
        "propagateTags": "SERVICE",
    }


def readme(inputs: SpecInputs) -> str:
    inputs = inputs.validated()
    mode = ("AWS VPC mode (Fargate)" if inputs.awsvpc
            else f"EC2 bridge mode, hostname {inputs.hostname or DEFAULT_HOSTNAME}")
    group = inputs.delegate_group_name or "(none: an autonomous delegate)"
    fargate = f"""
This spec is in AWS VPC mode, ready for Fargate (no hostname, FARGATE compatibility, awslogs to
{LOG_GROUP} in {inputs.region}). Before you register it:
  - executionRoleArn is {inputs.execution_role}.
    {"Replace " + AWS_ACCOUNT_PLACEHOLDER + " with your AWS account id, or" if not inputs.aws_account_id
     and not inputs.execution_role_arn else "Check that"} the role exists with the AWS-managed
    policy AmazonECSTaskExecutionRolePolicy (it pulls the image and writes the logs).
  - taskRoleArn is {inputs.task_role_arn or _NO_TASK_ROLE}.
  - In {SERVICE_SPEC_FILE} fill in "cluster", your private subnets and a security group that
    allows outbound HTTPS to the manager (the delegate needs no inbound port), then:

    aws ecs register-task-definition --cli-input-json file://{TASK_SPEC_FILE}
    aws ecs create-service --cli-input-json file://{SERVICE_SPEC_FILE}
""" if inputs.awsvpc else f"""
Register it and create the service (the cluster needs container instances with the ECSDelegate
role, see the install guide; 512 MiB per delegate is enough, no 8 GB host needed):

    aws ecs register-task-definition --cli-input-json file://{TASK_SPEC_FILE}
    aws ecs list-task-definitions
    aws ecs create-service --service-name <service> --task-definition {FAMILY} \\
        --cluster <cluster> --desired-count 1
    aws ecs list-services --cluster <cluster>

For Fargate, download the spec again with "Use AWS VPC Mode" ticked: it comes ready for Fargate.
"""
    network = (" --subnets <subnet-id> --security-groups <security-group-id>" if inputs.awsvpc
               else "")
    one_liner = (f"harness-delegate install-ecs --spec {TASK_SPEC_FILE} --cluster <cluster> "
                 f"--service-name <service>{network}")
    return f"""Harness ECS Delegate: task spec for account {inputs.account_id}
=====================================================================

Mode: {mode}
Delegate group: {group}
Profile: {inputs.profile_id or "(the primary profile)"}
Image: {inputs.image}
Manager: {inputs.manager_host_and_port}

Files:
  {TASK_SPEC_FILE}  the task definition (family {family(inputs.awsvpc)}, container {CONTAINER})
  {SERVICE_SPEC_FILE}  a service definition for AWS VPC mode (Fargate)
  {README_FILE}  this file
{fargate}
One command instead (registers the task definition, creates or updates the service, waits until
the delegate's tasks run; safe to repeat):

    {one_liner}

With the manager's API key in HARNESS_API_KEY it also waits until the delegate shows Connected:

    HARNESS_API_KEY=<API key> {one_liner} --wait-connected

{TASK_SPEC_FILE} holds this account's delegate token: keep the file as private as a password.

{README_SIZING}
"""


def archive(inputs: SpecInputs, *, mtime: float | None = None) -> bytes:
    """The download: `harness-delegate-ecs/` with the three files, as a gzipped tar."""
    inputs = inputs.validated()
    files = {
        TASK_SPEC_FILE: json.dumps(task_spec(inputs), indent=2) + "\n",
        SERVICE_SPEC_FILE: json.dumps(service_spec(inputs), indent=2) + "\n",
        README_FILE: readme(inputs),
    }
    stamp = time.time() if mtime is None else mtime
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        folder = tarfile.TarInfo(FOLDER)
        folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o700, int(stamp)
        tar.addfile(folder)
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{FOLDER}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o600, int(stamp)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def load_spec(data: bytes, source: str) -> dict[str, Any]:
    """`ecs-task-spec.json` from a file's bytes: the JSON itself or the downloaded .tar.gz."""
    if data[:2] == b"\x1f\x8b":
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                member = next((m for m in tar.getmembers()
                               if m.isfile() and m.name.rsplit("/", 1)[-1] == TASK_SPEC_FILE), None)
                if member is None:
                    raise SpecError(f"{source}: no {TASK_SPEC_FILE} inside; download the ECS task "
                                    "spec again")
                fh = tar.extractfile(member)
                assert fh is not None
                data = fh.read()
        except tarfile.TarError as exc:
            raise SpecError(f"{source}: not a readable .tar.gz ({exc}); download it again") from exc
    try:
        spec = json.loads(data)
    except ValueError as exc:
        raise SpecError(f"{source}: not JSON ({exc.__class__.__name__}); give {TASK_SPEC_FILE} "
                        f"or {ARCHIVE_NAME}") from None
    if not isinstance(spec, dict) or not spec.get("containerDefinitions"):
        raise SpecError(f"{source}: no containerDefinitions; is this an ECS task spec?")
    return copy.deepcopy(spec)


def env_of(spec: dict[str, Any]) -> dict[str, str]:
    """The delegate container's environment in a task spec."""
    for container in spec.get("containerDefinitions", []):
        if container.get("name") == CONTAINER:
            return {e["name"]: e["value"] for e in container.get("environment", [])}
    return {}
