"""What `install-ecs` checks around the install, so that "done" means what it says.

- warnings before: a MANAGER_HOST_AND_PORT on loopback (no ECS task can reach it), a bridge-mode
  cluster without container instances (no task can be placed);
- roles: `--create-roles` makes the task role (trusting ecs-tasks, with the generated HarnessECS
  policy) and the execution role (AmazonECSTaskExecutionRolePolicy) when they do not exist;
- after the tasks run: a stopped task that could not pull its image is named with the image;
- Connected: with the manager's URL and an API key, wait until the group's delegates show
  CONNECTED on the manager, as the guide's last step says.

Synchronous on purpose: this runs in a person's terminal, not on the delegate's event loop.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

TASK_ROLE = "HarnessDelegateTaskRole"
EXECUTION_ROLE = "ecsTaskExecutionRole"
EXECUTION_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
TRUST_ECS_TASKS = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
    "Action": "sts:AssumeRole"}]}


class CheckError(Exception):
    """A check failed for good (the message names what and what to do)."""


def loopback_manager(url: str) -> str | None:
    """A warning when ECS tasks could not reach `url` (MANAGER_HOST_AND_PORT)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return None
    return (f"MANAGER_HOST_AND_PORT is {url}, a loopback address: a delegate in an ECS task "
            "reaches its own container, not your manager. Download the spec from the manager's "
            "public URL (MANAGER_PUBLIC_URL), unless the tasks share this host's network "
            "(the local ECS with --run-containers does)")


def empty_bridge_cluster(cluster: dict[str, Any], awsvpc: bool) -> str | None:
    if awsvpc or int(cluster.get("registeredContainerInstancesCount", 0)) > 0:
        return None
    return (f"cluster {cluster.get('clusterName')} has no container instances: a bridge-mode (EC2) "
            "task cannot be placed until an instance with the ECS agent joins it (or use "
            "--awsvpc for Fargate)")


def pull_failure(ecs: Any, cluster: str, service: str) -> str | None:
    """The reason of a stopped task of `service` that could not pull its image, if any."""
    arns = ecs.list_tasks(cluster=cluster, serviceName=service, desiredStatus="STOPPED")["taskArns"]
    if not arns:
        return None
    for task in ecs.describe_tasks(cluster=cluster, tasks=arns[:100]).get("tasks", []):
        reasons = [task.get("stoppedReason") or ""] + [
            c.get("reason") or "" for c in task.get("containers", [])]
        for reason in reasons:
            if "CannotPullContainerError" in reason:
                return reason
    return None


def ensure_roles(iam: Any, policy: dict[str, Any], say: Callable[[str], None]) -> tuple[str, str]:
    """(task role ARN, execution role ARN), each created when missing."""
    from botocore.exceptions import ClientError

    def role(name: str, attach: Callable[[], None]) -> str:
        try:
            existing = str(iam.get_role(RoleName=name)["Role"]["Arn"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchEntity":
                raise CheckError(f"looking up role {name}: {exc}") from exc
        else:
            say(f"role {name} exists: {existing}")
            return existing
        try:
            arn = str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(
                TRUST_ECS_TASKS), Description="Harness ECS delegate")["Role"]["Arn"])
            attach()
        except ClientError as exc:
            raise CheckError(f"creating role {name}: {exc}; create it by hand (docs/operations.md, "
                             "IAM) and pass its ARN") from exc
        say(f"created role {name}: {arn}")
        return arn

    task = role(TASK_ROLE, lambda: iam.put_role_policy(
        RoleName=TASK_ROLE, PolicyName="HarnessECS", PolicyDocument=json.dumps(policy)))
    execution = role(EXECUTION_ROLE, lambda: iam.attach_role_policy(
        RoleName=EXECUTION_ROLE, PolicyArn=EXECUTION_POLICY))
    return task, execution


def connected(manager_url: str, api_key: str, account_id: str, group: str | None,
              timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """The CONNECTED delegates of `group` (all, without one) the manager lists."""
    if not manager_url.startswith(("https://", "http://")):
        raise CheckError(f"manager URL {manager_url[:100]!r}: expected http(s)://host[:port] "
                         "(--manager-url)")
    url = (f"{manager_url.rstrip('/')}/api/setup/delegates?"
           f"{urllib.parse.urlencode({'accountId': account_id})}")
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"})  # noqa: S310 (http(s) checked above)
    context = ssl.create_default_context()  # honours SSL_CERT_FILE (a private CA)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s, context=context) as resp:  # noqa: S310
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise CheckError(f"the manager at {manager_url} refused the API key (HTTP {exc.code}); "
                             "set HARNESS_API_KEY to a key of this account") from None
        raise
    groups = answer.get("resource", answer).get("groups", [])
    return [d for g in groups if group is None or g.get("groupName") == group
            for d in g.get("delegates", []) if d.get("status") == "CONNECTED"]


def wait_connected(manager_url: str, api_key: str, account_id: str, group: str | None,
                   count: int, timeout_s: float, say: Callable[[str], None],
                   sleep: Callable[[float], None] = time.sleep) -> list[dict[str, Any]]:
    """Until `count` delegates of `group` are CONNECTED on the manager."""
    deadline = time.monotonic() + timeout_s
    last = -1
    while True:
        try:
            found = connected(manager_url, api_key, account_id, group)
        except (OSError, ValueError) as exc:  # the manager not answering yet: keep waiting
            found = []
            if time.monotonic() >= deadline:
                raise CheckError(f"the manager at {manager_url} did not answer: {exc}") from exc
        if len(found) != last:
            say(f"waiting: {len(found)}/{count} delegate(s) Connected on the manager"
                + (f" in group {group}" if group else ""))
            last = len(found)
        if len(found) >= count:
            return found
        if time.monotonic() >= deadline:
            raise CheckError(f"{count - len(found)} delegate(s) not Connected on the manager within "
                             f"{timeout_s:g}s; the ECS tasks run: read their logs (the delegate "
                             "says why it cannot register)")
        sleep(2.0)
