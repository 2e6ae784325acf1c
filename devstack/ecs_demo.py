"""The ECS part of `scripts/demo`: a sample service on the local ECS and a rolling deploy of a new
image through the manager, its task log printed line by line as the delegate ships it."""

from __future__ import annotations

import logging
import time
from typing import Any

import boto3
import structlog

from devstack.procs import FINAL_STATES, Manager

REGION = "us-east-1"
CLUSTER = "demo"
SERVICE = "web"


def quiet_local_aws() -> None:
    """The in-process local AWS logs each scheduler step; the demo shows the task log instead."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def delegate_aws_env(aws: Any) -> dict[str, str]:
    """The delegate's 'own role' on the local AWS: an endpoint and dummy keys."""
    return {"AWS_ENDPOINT_URL": aws.endpoint_url, "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo", "AWS_DEFAULT_REGION": REGION}


class SampleWorld:
    """Cluster `demo` with networking and service `web` running 2 tasks of `sample:1`."""

    def __init__(self, aws: Any) -> None:
        kwargs = aws.client_kwargs()
        self.ecs = boto3.client("ecs", **kwargs)
        ec2 = boto3.client("ec2", **kwargs)
        self.ecs.create_cluster(clusterName=CLUSTER)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="demo", Description="demo", VpcId=vpc)["GroupId"]
        self.network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}}
        arn = self.ecs.register_task_definition(**self.task_definition("sample:1"))[
            "taskDefinition"]["taskDefinitionArn"]
        self.ecs.create_service(**self.service_definition(), cluster=CLUSTER, taskDefinition=arn)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            deployments = self.service()["deployments"]
            if len(deployments) == 1 and deployments[0]["rolloutState"] == "COMPLETED":
                return
            time.sleep(0.2)
        raise TimeoutError("the sample service did not reach a steady state in 20s")

    @staticmethod
    def task_definition(image: str) -> dict[str, Any]:
        return {"family": "sample", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
                "cpu": "256", "memory": "512",
                "containerDefinitions": [{"name": "app", "image": image, "essential": True,
                                          "portMappings": [{"containerPort": 8080}]}]}

    def service_definition(self) -> dict[str, Any]:
        return {"serviceName": SERVICE, "desiredCount": 2, "launchType": "FARGATE",
                "networkConfiguration": self.network,
                "deploymentConfiguration": {
                    "minimumHealthyPercent": 100, "maximumPercent": 200,
                    "deploymentCircuitBreaker": {"enable": True, "rollback": True}}}

    def service(self) -> dict[str, Any]:
        return dict(self.ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0])

    def describe(self) -> str:
        s = self.service()
        image = self.ecs.describe_task_definition(taskDefinition=s["taskDefinition"])[
            "taskDefinition"]["containerDefinitions"][0]["image"]
        return (f"service {SERVICE}: {s['runningCount']}/{s['desiredCount']} running, image {image}, "
                f"{len(s['deployments'])} deployment(s)")


def deploy(manager: Manager, world: SampleWorld, image: str, timeout_s: float = 60) -> dict[str, Any]:
    """Submit ECS_ROLLING_DEPLOY, print its log lines as they arrive; the final task view."""
    task_id = manager.submit("ECS_ROLLING_DEPLOY", {
        "infrastructure": {"region": REGION, "cluster": CLUSTER},
        "taskDefinition": world.task_definition(image),
        "serviceDefinition": world.service_definition(),
        "pollIntervalS": 0.5,
    }, timeoutMs=int(timeout_s * 1000))
    since, task = -1, manager.task(task_id)
    deadline = time.monotonic() + timeout_s + 15
    while time.monotonic() < deadline:
        task = manager.api("GET", f"/api/setup/tasks/{task_id}?sinceSeq={since}")
        for line in task.get("logLines") or []:
            print(f"       | {line.get('message')}", flush=True)
        since = task.get("nextSeq", since)
        if task["status"] in FINAL_STATES and not task.get("logLines"):
            break
        time.sleep(0.2)
    return dict(task)
