"""Service auto scaling around a deployment: take it off while ECS replaces tasks, put it back after.

Scaling fights a rolling deploy (it changes desiredCount under it), so a deploy deregisters the
service's scalable targets (which removes their policies) and afterwards registers either the
targets and policies the task's manifests give, or exactly what it found, also when the deploy
failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from delegate.ecs import manifests
from delegate.ecs.aws import Aws
from delegate.errors import TaskError
from delegate.tasks.registry import TaskLog

NAMESPACE = "ecs"
DIMENSION = "ecs:service:DesiredCount"
_TARGET_KEYS = ("ServiceNamespace", "ResourceId", "ScalableDimension", "MinCapacity", "MaxCapacity",
                "RoleARN", "SuspendedState")
_POLICY_KEYS = ("PolicyName", "ServiceNamespace", "ResourceId", "ScalableDimension", "PolicyType",
                "StepScalingPolicyConfiguration", "TargetTrackingScalingPolicyConfiguration")


def resource_id(cluster: str, service: str) -> str:
    return f"service/{cluster}/{service}"


@dataclass
class Scaling:
    """Scalable targets and policies of one service, as RegisterScalableTarget/PutScalingPolicy take them."""

    targets: list[dict[str, Any]] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.targets or self.policies)

    def to_json(self) -> dict[str, Any]:
        return {"scalableTargets": self.targets, "scalingPolicies": self.policies}

    @classmethod
    def from_manifests(cls, targets: list[dict[str, Any]], policies: list[dict[str, Any]],
                       cluster: str, service: str) -> Scaling:
        rid = resource_id(cluster, service)

        def fill(item: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
            p = manifests.pascal(item)
            p["ServiceNamespace"], p["ResourceId"] = NAMESPACE, rid
            p.setdefault("ScalableDimension", DIMENSION)
            return {k: p[k] for k in keys if k in p}

        made = cls([fill(t, _TARGET_KEYS) for t in targets], [fill(p, _POLICY_KEYS) for p in policies])
        for i, policy in enumerate(made.policies):
            if not policy.get("PolicyName"):
                raise TaskError(f"scalingPolicies[{i}]: 'policyName' is required")
        return made


async def read(aws: Aws, cluster: str, service: str) -> Scaling:
    rid = resource_id(cluster, service)
    answer = await aws.call("application-autoscaling", "describe_scalable_targets",
                            ServiceNamespace=NAMESPACE, ResourceIds=[rid])
    targets = [{k: t[k] for k in _TARGET_KEYS if k in t} for t in answer.get("ScalableTargets") or []]
    if not targets:
        return Scaling()
    answer = await aws.call("application-autoscaling", "describe_scaling_policies",
                            ServiceNamespace=NAMESPACE, ResourceId=rid)
    policies = [{k: p[k] for k in _POLICY_KEYS if k in p} for p in answer.get("ScalingPolicies") or []]
    return Scaling(targets, policies)


async def deregister(aws: Aws, scaling: Scaling, log: TaskLog) -> None:
    for target in scaling.targets:
        await aws.call("application-autoscaling", "deregister_scalable_target",
                       ServiceNamespace=target["ServiceNamespace"], ResourceId=target["ResourceId"],
                       ScalableDimension=target["ScalableDimension"])
    if scaling.targets:
        log.info(f"auto scaling deregistered for the deploy ({len(scaling.targets)} target(s), "
                 f"{len(scaling.policies)} policy(ies))")


async def register(aws: Aws, scaling: Scaling, log: TaskLog) -> None:
    for target in scaling.targets:
        await aws.call("application-autoscaling", "register_scalable_target", **target)
    for policy in scaling.policies:
        await aws.call("application-autoscaling", "put_scaling_policy", **policy)
    if scaling:
        log.info(f"auto scaling registered: {len(scaling.targets)} target(s), "
                 f"{len(scaling.policies)} policy(ies)")
