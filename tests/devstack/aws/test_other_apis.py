"""The other APIs the ECS executors use work against the local AWS: ELBv2 listener and rule edits,
target health, and Application Auto Scaling on an ECS service."""

from __future__ import annotations

import boto3
import pytest

from tests.devstack.aws.world import EcsWorld, task_ip

pytestmark = pytest.mark.timeout(60)


def test_listener_rule_and_target_health(ecs_world: EcsWorld) -> None:
    elbv2 = ecs_world.elbv2
    lb = elbv2.create_load_balancer(Name=ecs_world.name, Subnets=[ecs_world.subnet])["LoadBalancers"][0]
    vpc = lb["VpcId"]
    green = elbv2.create_target_group(
        Name=f"{ecs_world.name}-g", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip"
    )["TargetGroups"][0]["TargetGroupArn"]
    forward_blue = [{"Type": "forward", "TargetGroupArn": ecs_world.target_group}]
    listener = elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80, DefaultActions=forward_blue
    )["Listeners"][0]
    rule = elbv2.create_rule(
        ListenerArn=listener["ListenerArn"],
        Priority=10,
        Conditions=[{"Field": "path-pattern", "Values": ["/api/*"]}],
        Actions=forward_blue,
    )["Rules"][0]
    forward_green = [{"Type": "forward", "TargetGroupArn": green}]
    elbv2.modify_listener(ListenerArn=listener["ListenerArn"], DefaultActions=forward_green)
    elbv2.modify_rule(RuleArn=rule["RuleArn"], Actions=forward_green)
    listener = elbv2.describe_listeners(ListenerArns=[listener["ListenerArn"]])["Listeners"][0]
    assert listener["DefaultActions"][0]["TargetGroupArn"] == green
    rules = elbv2.describe_rules(RuleArns=[rule["RuleArn"]])["Rules"]
    assert rules[0]["Actions"][0]["TargetGroupArn"] == green

    ecs_world.create_service(ecs_world.task_definition(), desired=2)
    ecs_world.wait_completed()
    tasks = ecs_world.running_tasks()
    health = elbv2.describe_target_health(TargetGroupArn=ecs_world.target_group)["TargetHealthDescriptions"]
    assert {(h["Target"]["Id"], h["Target"]["Port"]) for h in health} == {(task_ip(t), 8080) for t in tasks}


def test_application_auto_scaling_on_the_service(ecs_world: EcsWorld) -> None:
    ecs_world.create_service(ecs_world.task_definition(), desired=1)
    scaling = boto3.client("application-autoscaling", **ecs_world.aws.client_kwargs())
    resource = f"service/{ecs_world.cluster}/web"
    scaling.register_scalable_target(
        ServiceNamespace="ecs",
        ResourceId=resource,
        ScalableDimension="ecs:service:DesiredCount",
        MinCapacity=1,
        MaxCapacity=4,
    )
    scaling.put_scaling_policy(
        PolicyName="cpu",
        ServiceNamespace="ecs",
        ResourceId=resource,
        ScalableDimension="ecs:service:DesiredCount",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 50.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
        },
    )
    scaling.register_scalable_target(
        ServiceNamespace="ecs",
        ResourceId=resource,
        ScalableDimension="ecs:service:DesiredCount",
        SuspendedState={"DynamicScalingInSuspended": True, "DynamicScalingOutSuspended": True},
    )
    targets = scaling.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[resource])
    target = targets["ScalableTargets"][0]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    assert target["SuspendedState"]["DynamicScalingInSuspended"] is True
    policies = scaling.describe_scaling_policies(ServiceNamespace="ecs", ResourceId=resource)
    assert [p["PolicyName"] for p in policies["ScalingPolicies"]] == ["cpu"]
