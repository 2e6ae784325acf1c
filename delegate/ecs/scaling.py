"""Service auto scaling around a deployment: suspended while ECS replaces tasks, resumed after.

Scaling fights a rolling deploy (it changes desiredCount under it), so a deploy *suspends* the
service's scalable targets (their SuspendedState: scale-in, scale-out and scheduled all suspended)
instead of deregistering them: the targets, their policies, the policies' alarms and ARNs all
survive, and restoring is resuming. After a successful deploy the task's own scaling manifests, if
it has any, are registered (and policies they do not name are deleted).

Until scaling is back, what a deploy suspended is recorded in the service's tags, one tag per task
(`harness-delegate-scaling/<task id>` = the targets' SuspendedState before the deploy), so a
re-delivered deploy resumes it even when the delegate that suspended it died half way, and one
deploy never restores another's. A record left by a deploy whose lease expired (docs/ecs-tasks.md)
is taken over by the next deploy of that service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from delegate.ecs import manifests
from delegate.ecs.aws import Aws
from delegate.errors import AwsError, TaskError
from delegate.tasks.registry import TaskLog

NAMESPACE = "ecs"
DIMENSION = "ecs:service:DesiredCount"
_TARGET_KEYS = ("ServiceNamespace", "ResourceId", "ScalableDimension", "MinCapacity", "MaxCapacity",
                "RoleARN", "SuspendedState")
SNAPSHOT_TAG = "harness-delegate-scaling"
_FLAGS = ("DynamicScalingInSuspended", "DynamicScalingOutSuspended", "ScheduledScalingSuspended")
ALL_SUSPENDED = dict.fromkeys(_FLAGS, True)
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


async def register(aws: Aws, scaling: Scaling, log: TaskLog) -> None:
    """Register targets and put policies as given (a task's manifests, a rollback's data)."""
    for target in scaling.targets:
        await aws.call("application-autoscaling", "register_scalable_target", **target)
    for policy in scaling.policies:
        await aws.call("application-autoscaling", "put_scaling_policy", **policy)
    if scaling:
        log.change(f"auto scaling registered: {len(scaling.targets)} target(s), "
                 f"{len(scaling.policies)} policy(ies)")


# --- suspend for a deploy, resume after --------------------------------------------------------


def _bits(state: dict[str, Any] | None) -> str:
    return "".join("1" if (state or {}).get(f) else "0" for f in _FLAGS)


def _state(bits: str) -> dict[str, bool]:
    return {f: b == "1" for f, b in zip(_FLAGS, bits.ljust(3, "0"), strict=True)}


@dataclass
class Suspension:
    """What one deploy suspended: dimension -> SuspendedState before it, and the records (tags of
    this task, or of expired deploys) to drop once it is resumed."""

    rid: str
    before: dict[str, dict[str, bool]] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.before)


def _records(service: dict[str, Any]) -> dict[str, str]:
    return {str(t["key"]): str(t.get("value", "")) for t in service.get("tags") or []
            if str(t.get("key", "")).startswith(f"{SNAPSHOT_TAG}/")}


def _parse(value: str) -> dict[str, dict[str, bool]]:
    found = {}
    for part in value.split():
        dim, _, bits = part.rpartition("=")
        if dim and len(bits) == 3 and set(bits) <= {"0", "1"}:
            found[dim] = _state(bits)
    return found


async def suspend(aws: Aws, service: dict[str, Any], cluster: str, task_id: str,
                  log: TaskLog) -> Suspension:
    """Suspend the service's scaling for this task's deploy, recording first what it was."""
    name, arn = str(service["serviceName"]), str(service["serviceArn"])
    rid = resource_id(cluster, name)
    mine = f"{SNAPSHOT_TAG}/{task_id}"
    records = _records(service)
    held = Suspension(rid, tags=sorted(records))
    for key in sorted(records, key=lambda k: k != mine):  # an earlier delivery's own record first
        for dim, state in _parse(records[key]).items():
            held.before.setdefault(dim, state)
    found = await read(aws, cluster, name)
    for target in found.targets:
        held.before.setdefault(target["ScalableDimension"], _state(_bits(target.get("SuspendedState"))))
    if not held:
        return held
    if mine not in records or set(held.before) - set(_parse(records[mine])):
        value = " ".join(f"{dim}={_bits(state)}" for dim, state in sorted(held.before.items()))
        await aws.call("ecs", "tag_resource", resourceArn=arn, tags=[{"key": mine, "value": value}])
        held.tags = sorted({*held.tags, mine})
    for target in found.targets:
        if _bits(target.get("SuspendedState")) != "111":
            await aws.call("application-autoscaling", "register_scalable_target", ServiceNamespace=NAMESPACE,
                           ResourceId=rid, ScalableDimension=target["ScalableDimension"],
                           SuspendedState=ALL_SUSPENDED)
    if found.targets:
        log.change(f"auto scaling suspended for the deploy ({len(found.targets)} target(s), "
                 f"{len(found.policies)} policy(ies) kept)")
    if any(k != mine for k in records):
        log.info("found auto scaling an earlier deploy of this service suspended and did not resume; "
                 "it is resumed after this deploy")
    elif mine in records:
        log.info("found the auto scaling an earlier delivery of this deploy suspended; "
                 "it is resumed after the deploy")
    return held


async def resume(aws: Aws, held: Suspension, service_arn: str, wanted: Scaling | None,
                 log: TaskLog) -> bool:
    """Resume what `held` suspended (or register `wanted`, the manifests after a success); True
    once it holds. On an AWS error the record stays on the service for the next deploy."""
    if not held and not wanted:
        return False
    try:
        if wanted:
            targets = [{**t, "SuspendedState": t.get("SuspendedState")
                        or held.before.get(t["ScalableDimension"]) or _state("000")}
                       for t in wanted.targets]
            await register(aws, Scaling(targets, wanted.policies), log)
            await _drop_other_policies(aws, held.rid, wanted, log)
        for dim, state in held.before.items():
            if wanted and any(t["ScalableDimension"] == dim for t in wanted.targets):
                continue
            await aws.call("application-autoscaling", "register_scalable_target", ServiceNamespace=NAMESPACE,
                           ResourceId=held.rid, ScalableDimension=dim, SuspendedState=state)
        if held.tags:
            await aws.call("ecs", "untag_resource", resourceArn=service_arn, tagKeys=held.tags)
    except AwsError as exc:
        log.error(f"auto scaling could not be resumed: {exc}. It stays recorded in the service's tag "  # noqa: TRY400
                  f"{SNAPSHOT_TAG}/...; the next deploy of this service resumes it")
        return False
    if held:
        log.change(f"auto scaling resumed ({len(held.before)} target(s))")
    return True


async def _drop_other_policies(aws: Aws, rid: str, wanted: Scaling, log: TaskLog) -> None:
    names = {p.get("PolicyName") for p in wanted.policies}
    answer = await aws.call("application-autoscaling", "describe_scaling_policies",
                            ServiceNamespace=NAMESPACE, ResourceId=rid)
    for policy in answer.get("ScalingPolicies") or []:
        if policy.get("PolicyName") not in names:
            await aws.call("application-autoscaling", "delete_scaling_policy",
                           PolicyName=policy["PolicyName"], ServiceNamespace=NAMESPACE,
                           ResourceId=rid, ScalableDimension=policy["ScalableDimension"])
            log.change(f"scaling policy {policy['PolicyName']} deleted: the task's manifests do not name it")
