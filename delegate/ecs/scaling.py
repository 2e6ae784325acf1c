"""Service auto scaling around a deployment: take it off while ECS replaces tasks, put it back after.

Scaling fights a rolling deploy (it changes desiredCount under it), so a deploy deregisters the
service's scalable targets (which removes their policies) and afterwards registers either the
targets and policies the task's manifests give, or exactly what it found, also when the deploy
failed.

What it found is also kept in the service's own tags until it is back (`remember` / `recall` /
`forget`), so that if the delegate dies half way, the re-delivered deploy restores it even when the
task carries no scaling manifests. Tag values allow few characters, so the snapshot is compressed
JSON in base64, split over numbered tags.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
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
SNAPSHOT_TAG = "harness-delegate-scaling"
_CHUNK = 250  # an ECS tag value holds at most 256 characters
_MAX_CHUNKS = 20
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


async def remember(aws: Aws, service_arn: str, scaling: Scaling, log: TaskLog) -> None:
    """Keep `scaling` in the service's tags before it is deregistered."""
    packed = base64.b64encode(zlib.compress(json.dumps(scaling.to_json(), default=str).encode()))
    text = packed.decode("ascii")
    chunks = [text[i:i + _CHUNK] for i in range(0, len(text), _CHUNK)]
    if len(chunks) > _MAX_CHUNKS:
        log.warn("auto scaling too large to keep in the service's tags; a re-delivered deploy "
                 "could not restore it if this delegate died half way")
        return
    await aws.call("ecs", "tag_resource", resourceArn=service_arn,
                   tags=[{"key": f"{SNAPSHOT_TAG}-{i}", "value": c} for i, c in enumerate(chunks)])


async def recall(aws: Aws, service_arn: str) -> Scaling:
    """What an earlier delivery of this deploy took off and did not put back (empty if none)."""
    parts = await _snapshot_tags(aws, service_arn)
    try:
        text = "".join(parts[f"{SNAPSHOT_TAG}-{i}"] for i in range(len(parts)))
        data = json.loads(zlib.decompress(base64.b64decode(text)))
        return Scaling(list(data["scalableTargets"]), list(data["scalingPolicies"]))
    except (KeyError, ValueError, TypeError, binascii.Error, zlib.error):
        return Scaling()  # partial or foreign tags: nothing trustworthy to restore


async def forget(aws: Aws, service_arn: str) -> None:
    """Scaling is back: drop the snapshot."""
    parts = await _snapshot_tags(aws, service_arn)
    if parts:
        await aws.call("ecs", "untag_resource", resourceArn=service_arn, tagKeys=sorted(parts))


async def _snapshot_tags(aws: Aws, service_arn: str) -> dict[str, str]:
    answer = await aws.call("ecs", "list_tags_for_resource", resourceArn=service_arn)
    return {t["key"]: t["value"] for t in answer.get("tags") or []
            if str(t.get("key", "")).startswith(f"{SNAPSHOT_TAG}-")}
