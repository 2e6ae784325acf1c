"""The local AWS as a real process (`python -m devstack aws`) for this folder, and the AWS CLI.

A process rather than the in-process `local_aws` fixture: moto allows one server per process, and
the installer is exercised as a user runs it, as a separate program pointed at AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support import REPO

READY = "local AWS ready at "


@dataclass
class Aws:
    url: str

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "ACCOUNT_", "DELEGATE_", "MANAGER_"))}
        env.update(AWS_ENDPOINT_URL=self.url, AWS_ACCESS_KEY_ID="testing",
                   AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                   HOME=str(home), PYTHONUNBUFFERED="1", **extra)
        return env

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")


@contextlib.contextmanager
def local_aws(*extra_args: str) -> Iterator[Aws]:
    """`python -m devstack aws` as a process (extra options: e.g. --run-containers)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack", "aws", "--port", "0", "--task-start-s", "0.2",
         "--steady-after-s", "0.3", *extra_args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    reader.join(30)
    try:
        assert lines and lines[0].startswith(READY), f"local AWS did not start: {lines}"
        yield Aws(lines[0][len(READY):].strip())
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def aws() -> Iterator[Aws]:
    with local_aws() as started:
        yield started


@dataclass
class Cluster:
    name: str
    subnet: str
    security_group: str


@pytest.fixture
def cluster(aws: Aws) -> Cluster:
    """A fresh ECS cluster with a VPC, a subnet and a security group."""
    return make_cluster(aws)


def make_cluster(aws: Aws) -> Cluster:
    name = f"c{uuid.uuid4().hex[:10]}"
    aws.client("ecs").create_cluster(clusterName=name)
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName=name, Description="delegate", VpcId=vpc)["GroupId"]
    return Cluster(name, subnet, sg)


@pytest.fixture(scope="session")
def aws_cli() -> Path:
    """The AWS CLI v1 from .tools/ (scripts/tools installs it, pinned, in its own virtualenv)."""
    subprocess.run([str(REPO / "scripts" / "tools")], check=True, timeout=300)
    return REPO / ".tools" / "awscli" / "bin" / "aws"
