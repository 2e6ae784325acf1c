"""The ECS capability check: may this delegate deploy there? Credentials valid, region and cluster
reachable. The manager asks for it before it assigns a task (params: the task's infrastructure).
Its AWS calls go through the delegate's proxy exactly as a deploy's do (NO_PROXY per endpoint)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from delegate.ecs.aws import Aws
from delegate.ecs.inputs import AwsAccess
from delegate.errors import AwsError
from delegate.proxy import ProxyRules
from delegate.tasks.capabilities import capability


@capability("ECS")
async def ecs_check(params: dict[str, Any], proxy: ProxyRules) -> tuple[bool, str]:
    try:
        access = AwsAccess.model_validate(params)
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) + f": {e['msg']}"
                           for e in exc.errors(include_input=False, include_url=False))
        return False, f"ECS capability params invalid ({fields}); give region and cluster"
    aws = Aws(access, proxy)  # the same per-endpoint proxy decision as the task's own calls
    try:
        who = await aws.call("sts", "get_caller_identity")
        answer = await aws.call("ecs", "describe_clusters", clusters=[access.cluster])
    except AwsError as exc:
        return False, str(exc)
    for cluster in answer.get("clusters") or []:
        if cluster.get("status") == "ACTIVE":
            return True, (f"cluster {cluster.get('clusterArn')} is ACTIVE in {access.region} "
                          f"(account {who.get('Account')})")
    return False, f"cluster {access.cluster!r} not found (or not ACTIVE) in region {access.region}"
