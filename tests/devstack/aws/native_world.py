"""An EcsWorld with what ECS's own blue/green, linear and canary strategies need: a load balancer, a
second (alternate) target group, a production listener rule and a test listener rule, both
forwarding to the world's target group, and CloudWatch alarms."""

from __future__ import annotations

from typing import Any

import boto3

from devstack.aws.server import LocalAws
from tests.devstack.aws.world import EcsWorld, wait_for


class NativeWorld(EcsWorld):
    def __init__(self, aws: LocalAws, name: str) -> None:
        super().__init__(aws, name)
        self.cloudwatch = boto3.client("cloudwatch", **aws.client_kwargs())
        subnet = self.ec2.describe_subnets(SubnetIds=[self.subnet])["Subnets"][0]
        vpc = subnet["VpcId"]
        second = self.ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.2.0/24",
                                        AvailabilityZone="us-east-1b")["Subnet"]["SubnetId"]
        balancer = self.elbv2.create_load_balancer(
            Name=name, Subnets=[self.subnet, second], SecurityGroups=[self.security_group],
        )["LoadBalancers"][0]["LoadBalancerArn"]
        self.alternate_group = self.elbv2.create_target_group(
            Name=f"{name}-g", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip",
        )["TargetGroups"][0]["TargetGroupArn"]
        self.prod_rule = self._rule(balancer, 80)
        self.test_rule = self._rule(balancer, 8080)
        self.alarm = f"{name}-errors"
        self.cloudwatch.put_metric_alarm(
            AlarmName=self.alarm, MetricName="HTTPCode_Target_5XX_Count", Namespace="AWS/ApplicationELB",
            Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1.0,
            ComparisonOperator="GreaterThanOrEqualToThreshold")

    def _rule(self, balancer: str, port: int) -> str:
        listener = self.elbv2.create_listener(
            LoadBalancerArn=balancer, Protocol="HTTP", Port=port,
            DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}],
        )["Listeners"][0]["ListenerArn"]
        return str(self.elbv2.create_rule(
            ListenerArn=listener, Priority=1,
            Conditions=[{"Field": "path-pattern", "Values": ["/*"]}],
            Actions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": [
                {"TargetGroupArn": self.target_group, "Weight": 100}]}}],
        )["Rules"][0]["RuleArn"])

    def load_balancers(self) -> list[dict[str, Any]]:
        return [{"targetGroupArn": self.target_group, "containerName": "app", "containerPort": 8080,
                 "advancedConfiguration": {
                     "alternateTargetGroupArn": self.alternate_group,
                     "productionListenerRule": self.prod_rule, "testListenerRule": self.test_rule,
                     "roleArn": "arn:aws:iam::123456789012:role/ecs-infrastructure"}}]

    def deployment_configuration(self, strategy: str, *, bake: int = 0, alarms: bool = True,
                                 breaker: bool = False, **extra: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "strategy": strategy, "bakeTimeInMinutes": bake,
            "minimumHealthyPercent": 100, "maximumPercent": 200,
            "deploymentCircuitBreaker": {"enable": breaker, "rollback": breaker}, **extra,
        }
        if alarms:
            config["alarms"] = {"alarmNames": [self.alarm], "enable": True, "rollback": True}
        return config

    def create_native_service(self, td: str, strategy: str, desired: int = 2, **config: Any) -> None:
        self.ecs.create_service(
            cluster=self.cluster, serviceName="web", taskDefinition=td, desiredCount=desired,
            launchType="FARGATE", networkConfiguration=self.network, loadBalancers=self.load_balancers(),
            deploymentConfiguration=self.deployment_configuration(strategy, **config))
        self.wait_completed()

    def weights(self, rule: str) -> dict[str, int]:
        action = self.elbv2.describe_rules(RuleArns=[rule])["Rules"][0]["Actions"][0]
        return {g["TargetGroupArn"]: g["Weight"] for g in action["ForwardConfig"]["TargetGroups"]}

    def green_weight(self, rule: str | None = None) -> int:
        weights = self.weights(rule or self.prod_rule)
        return weights.get(self.alternate_group, 0)

    def service_deployments(self, **filters: Any) -> list[dict[str, Any]]:
        return list(self.ecs.list_service_deployments(cluster=self.cluster, service="web",
                                                      **filters)["serviceDeployments"])

    def describe(self, arn: str) -> dict[str, Any]:
        return dict(self.ecs.describe_service_deployments(serviceDeploymentArns=[arn])
                    ["serviceDeployments"][0])

    def newest(self) -> dict[str, Any]:
        return self.describe(self.service_deployments()[0]["serviceDeploymentArn"])

    def wait_status(self, arn: str, statuses: tuple[str, ...], timeout_s: float = 30.0) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            found = self.describe(arn)
            return found if found["status"] in statuses else None

        return dict(wait_for(reached, f"service deployment to reach {statuses}", timeout_s))

    def set_alarm(self, state: str) -> None:
        self.cloudwatch.set_alarm_state(AlarmName=self.alarm, StateValue=state, StateReason="test")
