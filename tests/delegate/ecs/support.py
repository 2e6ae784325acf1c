"""Manifests and worlds for the ECS executor tests."""

from __future__ import annotations

from typing import Any

from devstack.aws.server import REGION, LocalAws
from tests.devstack.aws.world import EcsWorld


def aws_env(aws: LocalAws) -> dict[str, str]:
    """What a delegate needs in its environment to use the local AWS with its 'own role'."""
    return {"AWS_ENDPOINT_URL": aws.endpoint_url, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}


def infra(world: EcsWorld, **extra: Any) -> dict[str, Any]:
    return {"region": REGION, "cluster": world.cluster, **extra}


def task_definition(world: EcsWorld, image: str = "app:1", family: str | None = None,
                    **env: str) -> dict[str, Any]:
    return {
        "family": family or world.name,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [{
            "name": "app", "image": image, "essential": True,
            "portMappings": [{"containerPort": 8080}],
            "environment": [{"name": k, "value": v} for k, v in env.items()],
        }],
    }


def service_definition(world: EcsWorld, name: str = "web", desired: int = 2, *,
                       breaker: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "serviceName": name,
        "desiredCount": desired,
        "launchType": "FARGATE",
        "networkConfiguration": world.network,
        "loadBalancers": [{"targetGroupArn": world.target_group, "containerName": "app",
                           "containerPort": 8080}],
        "deploymentConfiguration": {
            "minimumHealthyPercent": 100, "maximumPercent": 200,
            "deploymentCircuitBreaker": {"enable": breaker, "rollback": breaker},
        },
        **extra,
    }


def log_text(task: dict[str, Any]) -> str:
    return "\n".join(str(line.get("message")) for line in task.get("logLines") or [])


def result(task: dict[str, Any]) -> dict[str, Any]:
    return dict(task.get("result") or {})


class BlueGreenWorld(EcsWorld):
    """An EcsWorld with a load balancer: a prod listener on :80 forwarding to the world's target
    group (blue), a stage listener on :8080 forwarding to a second one (green)."""

    def __init__(self, aws: LocalAws, name: str) -> None:
        super().__init__(aws, name)
        subnet = self.ec2.describe_subnets(SubnetIds=[self.subnet])["Subnets"][0]
        vpc = subnet["VpcId"]
        second = self.ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.2.0/24",
                                        AvailabilityZone="us-east-1b")["Subnet"]["SubnetId"]
        self.load_balancer = self.elbv2.create_load_balancer(
            Name=name, Subnets=[self.subnet, second], SecurityGroups=[self.security_group],
        )["LoadBalancers"][0]["LoadBalancerArn"]
        self.stage_group = self.elbv2.create_target_group(
            Name=f"{name}-s", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip",
        )["TargetGroups"][0]["TargetGroupArn"]
        self.prod_listener = self._listener(80, self.target_group)
        self.stage_listener = self._listener(8080, self.stage_group)

    def _listener(self, port: int, group: str) -> str:
        return str(self.elbv2.create_listener(
            LoadBalancerArn=self.load_balancer, Protocol="HTTP", Port=port,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": group}],
        )["Listeners"][0]["ListenerArn"])

    def forwards_to(self, listener: str) -> str:
        action = self.elbv2.describe_listeners(ListenerArns=[listener])["Listeners"][0]["DefaultActions"][0]
        forward = action.get("TargetGroupArn")
        return str(forward or action["ForwardConfig"]["TargetGroups"][0]["TargetGroupArn"])

    def lb_config(self) -> dict[str, str]:
        return {"prodListenerArn": self.prod_listener, "stageListenerArn": self.stage_listener}

    def tags(self, service: str) -> dict[str, str]:
        found = self.ecs.describe_services(cluster=self.cluster, services=[service], include=["TAGS"])
        return {t["key"]: t["value"] for t in found["services"][0].get("tags") or []}
