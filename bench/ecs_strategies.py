"""Issue 14: one deploy per ECS strategy (ROLLING, BLUE_GREEN, LINEAR, CANARY) on the local ECS, by
the delegate (through the manager) and by fabfuel's `ecs-deploy`, side by side: AWS API calls (counted
by the local AWS), wall time, and the delay between ECS marking the service deployment SUCCESSFUL
(its `finishedAt`) and the tool reporting it (the manager's `finishedAt` for the delegate's result;
the process exit for ecs-deploy). A negative delay means the tool reported before ECS was done.

Part of `scripts/bench ecs`; alone:
    .venv/bin/python -c "from bench import ecs_strategies as s; print(s.run())"
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3

from bench.common import table
from devstack import ecs_demo
from devstack.procs import REPO, Manager, wait_until

ECS_DEPLOY = REPO / ".tools" / "ecs-deploy" / "bin" / "ecs"
STRATEGIES: dict[str, dict[str, Any]] = {
    "ROLLING": {},
    "BLUE_GREEN": {"bakeTimeInMinutes": 1},
    "LINEAR": {"bakeTimeInMinutes": 1,
               "linearConfiguration": {"stepPercent": 50.0, "stepBakeTimeInMinutes": 1}},
    "CANARY": {"bakeTimeInMinutes": 1,
               "canaryConfiguration": {"canaryPercent": 20.0, "canaryBakeTimeInMinutes": 1}},
}


class Lanes:
    """A cluster and a load balancer; each service gets its own two target groups and listener rule."""

    def __init__(self, aws: Any, cluster: str) -> None:
        kwargs = aws.client_kwargs()
        self.ecs = boto3.client("ecs", **kwargs)
        self.elbv2 = boto3.client("elbv2", **kwargs)
        ec2 = boto3.client("ec2", **kwargs)
        self.cluster = cluster
        self.ecs.create_cluster(clusterName=cluster)
        self.vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=self.vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=zone)
                   ["Subnet"]["SubnetId"] for i, zone in ((1, "us-east-1a"), (2, "us-east-1b"))]
        group = ec2.create_security_group(GroupName=cluster, Description="b", VpcId=self.vpc)["GroupId"]
        self.network = {"awsvpcConfiguration": {"subnets": subnets[:1], "securityGroups": [group]}}
        self.balancer = self.elbv2.create_load_balancer(
            Name=cluster, Subnets=subnets, SecurityGroups=[group])["LoadBalancers"][0]["LoadBalancerArn"]
        self.port = 8000

    def load_balancers(self, name: str) -> list[dict[str, Any]]:
        groups = [self.elbv2.create_target_group(Name=f"{name}-{x}"[:32], Protocol="HTTP", Port=80,
                                                 VpcId=self.vpc, TargetType="ip")
                  ["TargetGroups"][0]["TargetGroupArn"] for x in ("a", "b")]
        self.port += 1
        listener = self.elbv2.create_listener(
            LoadBalancerArn=self.balancer, Protocol="HTTP", Port=self.port,
            DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}],
        )["Listeners"][0]["ListenerArn"]
        rule = self.elbv2.create_rule(
            ListenerArn=listener, Priority=1, Conditions=[{"Field": "path-pattern", "Values": ["/*"]}],
            Actions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": [
                {"TargetGroupArn": groups[0], "Weight": 100}]}}])["Rules"][0]["RuleArn"]
        return [{"targetGroupArn": groups[0], "containerName": "app", "containerPort": 80,
                 "advancedConfiguration": {"alternateTargetGroupArn": groups[1],
                                           "productionListenerRule": rule,
                                           "roleArn": "arn:aws:iam::123456789012:role/ecs-lb"}}]

    @staticmethod
    def task_definition(family: str, image: str) -> dict[str, Any]:
        return {"family": family, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
                "cpu": "256", "memory": "512", "containerDefinitions": [
                    {"name": "app", "image": image, "essential": True,
                     "portMappings": [{"containerPort": 80}]}]}

    def service_definition(self, name: str, strategy: str, lbs: list[dict[str, Any]]) -> dict[str, Any]:
        config = {"minimumHealthyPercent": 100, "maximumPercent": 200, "strategy": strategy,
                  "deploymentCircuitBreaker": {"enable": True, "rollback": True}, **STRATEGIES[strategy]}
        return {"serviceName": name, "desiredCount": 2, "launchType": "FARGATE", "loadBalancers": lbs,
                "networkConfiguration": self.network, "deploymentConfiguration": config}

    def create(self, name: str, strategy: str) -> dict[str, Any]:
        svc = self.service_definition(name, strategy, self.load_balancers(name))
        arn = self.ecs.register_task_definition(**self.task_definition(name, "app:1"))[
            "taskDefinition"]["taskDefinitionArn"]
        self.ecs.create_service(**svc, cluster=self.cluster, taskDefinition=arn)
        return svc

    def steady(self, name: str) -> bool:
        d = self.ecs.describe_services(cluster=self.cluster, services=[name])["services"][0]["deployments"]
        return len(d) == 1 and d[0]["rolloutState"] == "COMPLETED"

    def newest(self, name: str) -> dict[str, Any]:
        arn = self.ecs.list_service_deployments(cluster=self.cluster, service=name)[
            "serviceDeployments"][0]["serviceDeploymentArn"]
        found = self.ecs.describe_service_deployments(serviceDeploymentArns=[arn])
        return dict(found["serviceDeployments"][0])


def _delay(sd: dict[str, Any], reported_s: float) -> str:
    finished = sd.get("finishedAt")
    if not isinstance(finished, datetime):
        return f"ECS: {sd.get('status')}, not finished"
    return f"{reported_s - finished.timestamp():+.2f} s"


def rows(manager: Manager, aws: Any, poll_s: float) -> list[tuple[str, str, str]]:
    lanes = Lanes(aws, "benchstrat")
    found: list[tuple[str, str, str]] = []
    for strategy in STRATEGIES:
        mine, theirs = (f"{who}-{strategy.lower().replace('_', '')}" for who in ("d", "e"))
        svc = lanes.create(mine, strategy)
        lanes.create(theirs, strategy)
        wait_until(lambda m=mine, t=theirs: lanes.steady(m) and lanes.steady(t), 60, "services steady")
        time.sleep(0.5)  # nothing else in flight while counting
        data = {"infrastructure": {"region": ecs_demo.REGION, "cluster": lanes.cluster},
                "taskDefinition": lanes.task_definition(mine, "app:2"), "serviceDefinition": svc,
                "pollIntervalS": poll_s, "verifyAfterCompletionS": 0}
        calls0, t0 = aws.faults.total(), time.perf_counter()
        task = manager.wait_task(manager.submit("ECS_ROLLING_DEPLOY", data, timeoutMs=120_000), timeout=130)
        wall, calls = time.perf_counter() - t0, aws.faults.total() - calls0
        sd = lanes.newest(mine)
        delay = _delay(sd, float(task.get("finishedAt") or 0) / 1000)
        found.append((f"{strategy}: delegate", f"{calls} API calls, {wall:.2f} s",
                      f"{task['status']}, {sd['status']}; SUCCESSFUL -> result {delay}"))
        if not ECS_DEPLOY.exists():
            found.append((f"{strategy}: ecs-deploy", "not installed", "run scripts/tools"))
            continue
        env = {**os.environ, **ecs_demo.delegate_aws_env(aws)}
        calls0, t0 = aws.faults.total(), time.perf_counter()
        done = subprocess.run([str(ECS_DEPLOY), "deploy", lanes.cluster, theirs, "--image", "app", "app:2",
                               "--timeout", "120"], env=env, capture_output=True, text=True, timeout=180,
                              check=False)
        ended = time.time()
        wall, calls = time.perf_counter() - t0, aws.faults.total() - calls0
        wait_until(lambda t=theirs: lanes.newest(t).get("finishedAt"), 60, "ecs-deploy's deployment to end")
        sd = lanes.newest(theirs)
        found.append((f"{strategy}: ecs-deploy", f"{calls} API calls, {wall:.2f} s",
                      f"exit {done.returncode}, {sd['status']}; SUCCESSFUL -> exit {_delay(sd, ended)}"))
    return found


def run(poll_s: float = 1.0) -> str:
    from bench.ecs import _start_delegate
    from devstack.aws.server import LocalAws

    ecs_demo.quiet_local_aws()
    with tempfile.TemporaryDirectory(prefix="bench-ecs-") as tmp, LocalAws(port=0) as aws, \
            Manager(Path(tmp) / "manager") as manager:
        delegate = _start_delegate(manager, Path(tmp) / "delegate", aws)
        try:
            return table("One deploy per ECS strategy on the local ECS", rows(manager, aws, poll_s))
        finally:
            delegate.stop()
