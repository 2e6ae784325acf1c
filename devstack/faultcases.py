"""The fault cases of issue 10, each a real rolling deploy through the manager and delegate
processes, with a fault injected at the worst moment by a `FaultProxy` in front of the local AWS.

Used by the fault suite (`tests/faults`, which asserts on each `Outcome`) and by
`scripts/bench faults` (which prints them side by side with the fault-free deploy). Every case gets
its own cluster, its own delegate group (so only its own delegates take its task) and its own proxy
(so its faults touch only its delegates); cases are independent and may run at the same time.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from devstack.aws.server import REGION, LocalAws
from devstack.faultproxy import FaultProxy
from devstack.procs import FINAL_STATES, Manager, Process, start_delegate, wait_until

#: manager thresholds for the cases: a lost delegate's task is re-queued after ORPHAN_S
ORPHAN_S = 20.0
MANAGER_ARGS = ("--disconnect-after-s", "5", "--ecs-stale-slot-s", "3", "--task-orphan-s", f"{ORPHAN_S:g}",
                "--rebroadcast-s", "1")
DEPLOY_TIMEOUT_S = 120.0
POLICY = "cpu"


@dataclass
class Outcome:
    case: str
    task: dict[str, Any]
    elapsed_s: float  # task submitted -> final status seen
    calls: Counter[str]  # AWS calls through the case's proxies
    service: dict[str, Any]
    image: str  # of the service's task definition at the end
    scaling: list[tuple[int, int, bool]]  # (min, max, anything suspended) per scalable target
    policies: list[str]
    tags: dict[str, str]  # the service's tags at the end
    images_registered: list[str]  # images of the family's revisions, oldest first
    requeue_reasons: list[str] = field(default_factory=list)
    others: list[dict[str, Any]] = field(default_factory=list)  # further tasks of the case

    @property
    def status(self) -> str:
        return str(self.task.get("status"))

    @property
    def result(self) -> dict[str, Any]:
        return dict(self.task.get("result") or {})

    @property
    def log(self) -> str:
        return "\n".join(str(line.get("message")) for line in self.task.get("logLines") or [])

    @property
    def message(self) -> str:
        return str(self.task.get("errorMessage") or self.result.get("message") or "")


class Case:
    """One case's world: a cluster with service `web` (4 tasks of app:1, 50-100 %), scaling
    (1-6, policy cpu), a delegate group, a proxy per delegate."""

    def __init__(self, name: str, aws: LocalAws, manager: Manager, work: Path, *,
                 breaker: bool = False) -> None:
        self.name, self.aws, self.manager, self.work = name, aws, manager, work
        self.group = f"{name}-{uuid.uuid4().hex[:6]}"
        self.cluster = f"c{uuid.uuid4().hex[:10]}"
        self.breaker = breaker
        kw = aws.client_kwargs()
        self.ecs = boto3.client("ecs", **kw)
        self.scaling = boto3.client("application-autoscaling", **kw)
        self.proxies: list[FaultProxy] = []
        self.delegates: list[Process] = []
        self._world()

    def _world(self) -> None:
        kw = self.aws.client_kwargs()
        ec2, elbv2 = boto3.client("ec2", **kw), boto3.client("elbv2", **kw)
        self.ecs.create_cluster(clusterName=self.cluster)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName=self.cluster, Description="faults", VpcId=vpc)["GroupId"]
        self.target_group = elbv2.create_target_group(
            Name=self.cluster, Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip",
        )["TargetGroups"][0]["TargetGroupArn"]
        self.network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}}
        td = self.ecs.register_task_definition(**self.task_definition("app:1"))["taskDefinition"]
        self.ecs.create_service(cluster=self.cluster, taskDefinition=td["taskDefinitionArn"],
                                **self.service_definition())
        wait_until(lambda: self.deployments() == ["COMPLETED"], 30, f"{self.name}: service web ready")
        rid = f"service/{self.cluster}/web"
        self.scaling.register_scalable_target(ServiceNamespace="ecs", ResourceId=rid,
                                              ScalableDimension="ecs:service:DesiredCount",
                                              MinCapacity=1, MaxCapacity=6)
        self.scaling.put_scaling_policy(
            PolicyName=POLICY, ServiceNamespace="ecs", ResourceId=rid,
            ScalableDimension="ecs:service:DesiredCount", PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={"TargetValue": 50.0, "PredefinedMetricSpecification": {
                "PredefinedMetricType": "ECSServiceAverageCPUUtilization"}})

    def task_definition(self, image: str, **env: str) -> dict[str, Any]:
        return {"family": self.cluster, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
                "cpu": "256", "memory": "512", "containerDefinitions": [{
                    "name": "app", "image": image, "essential": True,
                    "portMappings": [{"containerPort": 8080}],
                    "environment": [{"name": k, "value": v} for k, v in env.items()]}]}

    def service_definition(self) -> dict[str, Any]:
        return {"serviceName": "web", "desiredCount": 4, "launchType": "FARGATE",
                "networkConfiguration": self.network,
                "loadBalancers": [{"targetGroupArn": self.target_group, "containerName": "app",
                                   "containerPort": 8080}],
                "deploymentConfiguration": {
                    "minimumHealthyPercent": 50, "maximumPercent": 100,
                    "deploymentCircuitBreaker": {"enable": self.breaker, "rollback": self.breaker}}}

    def deployments(self) -> list[str]:
        service = self.ecs.describe_services(cluster=self.cluster, services=["web"])["services"][0]
        return [str(d.get("rolloutState")) for d in service["deployments"]]

    # --- processes -----------------------------------------------------------------------------

    def delegate(self, slot: int = 0, **env: str) -> Process:
        """Start delegate `slot` (its work dir and proxy are kept across restarts)."""
        while len(self.proxies) <= slot:
            self.proxies.append(FaultProxy(self.aws.endpoint_url).start())
        proc = start_delegate(self.manager, self.work / f"{self.group}-{slot}",
                              AWS_ENDPOINT_URL=self.proxies[slot].url, AWS_ACCESS_KEY_ID="testing",
                              AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - the local AWS's dummy keys
                              AWS_DEFAULT_REGION=REGION,
                              DELEGATE_GROUP_NAME=self.group, **env)
        self.delegates.append(proc)
        proc.wait_event("manager.registered", timeout=60)
        return proc

    def submit(self, image: str = "app:2", **extra: Any) -> str:
        data = {"infrastructure": {"region": REGION, "cluster": self.cluster}, "pollIntervalS": 0.5,
                "taskDefinition": self.task_definition(image, **extra.pop("env", {})),
                "serviceDefinition": self.service_definition(), **extra}
        return self.manager.submit("ECS_ROLLING_DEPLOY", data, delegateGroupName=self.group,
                                   timeoutMs=int(DEPLOY_TIMEOUT_S * 1000))

    def wait(self, task_id: str) -> dict[str, Any]:
        self.manager.wait_task(task_id, timeout=DEPLOY_TIMEOUT_S + 60, final=FINAL_STATES)
        # the last log lines may land just after the result
        time.sleep(1.0)
        return self.manager.task(task_id)

    def close(self) -> None:
        for proc in self.delegates:
            proc.stop()
        for proxy in self.proxies:
            proxy.stop()

    # --- what is there at the end --------------------------------------------------------------

    def outcome(self, task_id: str, started: float, others: list[str] = ()) -> Outcome:  # type: ignore[assignment]
        task = self.wait(task_id)
        elapsed = time.monotonic() - started
        more = [self.wait(t) for t in others]  # the state at the end is after every task of the case
        service = self.ecs.describe_services(cluster=self.cluster, services=["web"],
                                             include=["TAGS"])["services"][0]
        td = self.ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
        rid = f"service/{self.cluster}/web"
        targets = self.scaling.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[rid])
        policies = self.scaling.describe_scaling_policies(ServiceNamespace="ecs", ResourceId=rid)
        arns = self.ecs.list_task_definitions(familyPrefix=self.cluster, sort="ASC")["taskDefinitionArns"]
        images = [self.ecs.describe_task_definition(taskDefinition=a)["taskDefinition"][
            "containerDefinitions"][0]["image"] for a in arns]
        calls: Counter[str] = Counter()
        for proxy in self.proxies:
            calls.update(proxy.calls)
        events = self.manager.process.find("task.requeued", task_id=task_id) if self.manager.process else []
        reasons = [str(e.get("reason")) for e in events]
        return Outcome(
            self.name, task, elapsed, calls, service, td["containerDefinitions"][0]["image"],
            [(t["MinCapacity"], t["MaxCapacity"], any((t.get("SuspendedState") or {}).values()))
             for t in targets["ScalableTargets"]],
            [p["PolicyName"] for p in policies["ScalingPolicies"]],
            {t["key"]: t["value"] for t in service.get("tags") or []}, images, reasons,
            more)


def after(seconds: float, action: Callable[[], Any]) -> None:
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()


def kill(proc: Process, sig: int = signal.SIGKILL) -> Callable[[], None]:
    return lambda: proc.send(sig)
