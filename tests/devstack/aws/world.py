"""A small ECS world on the local AWS for tests: a cluster, networking, a target group, and
helpers to register task definitions, create services and wait for them through plain boto3."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3

from devstack.aws.server import LocalAws
from devstack.procs import wait_until


def wait_for(predicate: Callable[[], Any], what: str, timeout_s: float = 20.0, every_s: float = 0.05) -> Any:
    return wait_until(predicate, timeout_s, what, every_s)


class EcsWorld:
    def __init__(self, aws: LocalAws, name: str) -> None:
        kwargs = aws.client_kwargs()
        self.aws = aws
        self.name = name
        self.ecs = boto3.client("ecs", **kwargs)
        self.ec2 = boto3.client("ec2", **kwargs)
        self.elbv2 = boto3.client("elbv2", **kwargs)
        self.cluster = name
        self.ecs.create_cluster(clusterName=name)
        vpc = self.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        self.subnet = self.ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        self.security_group = self.ec2.create_security_group(GroupName=name, Description="test", VpcId=vpc)[
            "GroupId"
        ]
        self.target_group = self.elbv2.create_target_group(
            Name=name, Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip"
        )["TargetGroups"][0]["TargetGroupArn"]
        self.network = {
            "awsvpcConfiguration": {"subnets": [self.subnet], "securityGroups": [self.security_group]}
        }

    def task_definition(self, family: str | None = None, image: str = "app:1", **env: str) -> str:
        return str(
            self.ecs.register_task_definition(
                family=family or self.name,
                networkMode="awsvpc",
                requiresCompatibilities=["FARGATE"],
                cpu="256",
                memory="512",
                containerDefinitions=[
                    {
                        "name": "app",
                        "image": image,
                        "essential": True,
                        "portMappings": [{"containerPort": 8080}],
                        "environment": [{"name": k, "value": v} for k, v in env.items()],
                    }
                ],
            )["taskDefinition"]["taskDefinitionArn"]
        )

    def create_service(
        self,
        task_definition: str,
        desired: int = 2,
        *,
        name: str = "web",
        min_pct: int = 100,
        max_pct: int = 200,
        breaker: bool = False,
        rollback: bool = False,
        **extra: Any,
    ) -> dict[str, Any]:
        return dict(
            self.ecs.create_service(
                cluster=self.cluster,
                serviceName=name,
                taskDefinition=task_definition,
                desiredCount=desired,
                launchType="FARGATE",
                networkConfiguration=self.network,
                loadBalancers=[
                    {"targetGroupArn": self.target_group, "containerName": "app", "containerPort": 8080}
                ],
                deploymentConfiguration={
                    "minimumHealthyPercent": min_pct,
                    "maximumPercent": max_pct,
                    "deploymentCircuitBreaker": {"enable": breaker, "rollback": rollback},
                },
                **extra,
            )["service"]
        )

    def service(self, name: str = "web") -> dict[str, Any]:
        return dict(self.ecs.describe_services(cluster=self.cluster, services=[name])["services"][0])

    def wait_completed(self, name: str = "web", timeout_s: float = 20.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            service = self.service(name)
            deployments = service["deployments"]
            if len(deployments) == 1 and deployments[0]["rolloutState"] == "COMPLETED":
                return service
            return None

        return dict(wait_for(done, f"service {name} to complete its deployment", timeout_s))

    def run_task(self, td: str, **extra: Any) -> dict[str, Any]:
        """RunTask on Fargate in this world's network; the task as RunTask answers it."""
        return dict(self.ecs.run_task(
            cluster=self.cluster, taskDefinition=td, launchType="FARGATE",
            networkConfiguration=self.network, **extra,
        )["tasks"][0])

    def wait_task(self, task_arn: str, waiter: str = "tasks_stopped") -> dict[str, Any]:
        """Wait with `waiter` (tasks_running / tasks_stopped), then describe the task."""
        self.ecs.get_waiter(waiter).wait(
            cluster=self.cluster, tasks=[task_arn], WaiterConfig={"Delay": 1, "MaxAttempts": 20})
        return dict(self.ecs.describe_tasks(cluster=self.cluster, tasks=[task_arn])["tasks"][0])

    def running_tasks(self, name: str = "web") -> list[dict[str, Any]]:
        arns = self.ecs.list_tasks(cluster=self.cluster, serviceName=name)["taskArns"]
        if not arns:
            return []
        return list(self.ecs.describe_tasks(cluster=self.cluster, tasks=arns)["tasks"])

    def healthy_targets(self) -> set[str]:
        health = self.elbv2.describe_target_health(TargetGroupArn=self.target_group)
        return {
            h["Target"]["Id"]
            for h in health["TargetHealthDescriptions"]
            if h["TargetHealth"]["State"] == "healthy"
        }


def task_ip(task: dict[str, Any]) -> str:
    for attachment in task.get("attachments", []):
        for detail in attachment.get("details", []):
            if detail["name"] == "privateIPv4Address":
                return str(detail["value"])
    raise AssertionError(f"task {task['taskArn']} has no private IP")
