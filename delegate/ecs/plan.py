"""What a deploy will change, before it changes it; an existing task definition deployed as it is;
old revisions cleaned up after a success.

`plan` compares the task definition manifest with the family's latest ACTIVE revision and the
service definition with the running service, field by field, counting only what the manifest says
(AWS's own defaults in the described objects are not changes). The result is a list of
`{path, from, to}` per object: the dry run returns it without changing anything, and every real
deploy returns it too.
"""

from __future__ import annotations

from typing import Any

from delegate.ecs import manifests, services
from delegate.ecs.aws import Aws
from delegate.errors import AwsPermanentError, TaskError
from delegate.tasks.registry import TaskLog

MAX_CHANGES = 200  # a diff longer than this is cut (and says so)


def is_arn(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("arn:") and ":task-definition/" in value


def diff(actual: Any, desired: Any, path: str = "") -> list[dict[str, Any]]:
    """Where `actual` does not already say what `desired` says (manifests.contains, per field)."""
    if isinstance(desired, dict) and isinstance(actual, dict):
        found: list[dict[str, Any]] = []
        for key, value in desired.items():
            if value is not None:
                found += diff(actual.get(key), value, f"{path}.{key}" if path else key)
        return found
    if isinstance(desired, list) and isinstance(actual, list) and len(actual) == len(desired):
        pairs = enumerate(zip(actual, desired, strict=True))
        return [c for i, (a, d) in pairs for c in diff(a, d, f"{path}[{i}]")]
    if manifests.contains(actual, desired):
        return []
    return [{"path": path, "from": actual, "to": desired}]


def _cut(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(changes) <= MAX_CHANGES:
        return changes
    return [*changes[:MAX_CHANGES], {"path": "...", "from": None, "to": f"{len(changes) - MAX_CHANGES} more"}]


async def existing(aws: Aws, arn: str, log: TaskLog) -> dict[str, Any]:
    """The task definition behind `arn`, which must be ACTIVE; it is deployed without registering."""
    try:
        answer = await aws.call("ecs", "describe_task_definition", taskDefinition=arn)
        found = dict(answer["taskDefinition"])
    except AwsPermanentError as exc:
        raise TaskError(f"taskDefinition {arn}: {exc}. Give the ARN of an existing revision, or a "
                        "task definition manifest to register.") from None
    if found.get("status") != "ACTIVE":
        raise TaskError(f"taskDefinition {arn} is {found.get('status')}: deploy an ACTIVE revision")
    log.info(f"deploying the existing task definition {arn} (nothing registered)")
    return found


def plan(td: dict[str, Any] | None, latest: dict[str, Any] | None, td_arn: str | None,
         svc: dict[str, Any], current: dict[str, Any] | None, desired: int | None) -> dict[str, Any]:
    """The structured diff: `td` is the manifest (None when an ARN is deployed as it is)."""
    if td is None:
        td_part: dict[str, Any] = {"family": None, "register": False, "taskDefinitionArn": td_arn,
                                   "changes": []}
    else:
        changes = diff(latest or {}, {k: v for k, v in td.items() if k != "tags"})
        register = latest is None or not manifests.same_task_definition(latest, td)
        td_part = {"family": td["family"], "register": register,
                   "latestArn": (latest or {}).get("taskDefinitionArn"), "changes": _cut(changes)}
    wanted = manifests.update_params(svc)
    if desired is not None:
        wanted["desiredCount"] = desired
    running_td = (current or {}).get("taskDefinition")
    svc_changes = diff(current or {}, wanted) if current is not None else []
    new = "(the revision to be registered)"
    target = td_arn or (new if td_part["register"] else td_part.get("latestArn"))
    if current is not None and target != running_td:
        svc_changes.insert(0, {"path": "taskDefinition", "from": running_td, "to": target})
    return {"taskDefinition": td_part,
            "service": {"serviceName": svc["serviceName"], "create": current is None,
                        "changes": _cut(svc_changes)}}


def describe_plan(p: dict[str, Any], log: TaskLog) -> None:
    td, svc = p["taskDefinition"], p["service"]
    if td["family"] is not None:
        log.info(f"plan: task definition {td['family']}: " + (
            f"register a new revision ({len(td['changes'])} field(s) differ from {td['latestArn']})"
            if td["register"] and td["latestArn"] else "register the first revision" if td["register"]
            else "unchanged"))
    for change in td["changes"][:20]:
        log.info(f"  {change['path']}: {change['from']!r} -> {change['to']!r}")
    log.info(f"plan: service {svc['serviceName']}: " + ("create it" if svc["create"] else
             f"{len(svc['changes'])} change(s)" if svc["changes"] else "unchanged"))
    for change in svc["changes"][:20]:
        log.info(f"  {change['path']}: {change['from']!r} -> {change['to']!r}")


async def clean_up(aws: Aws, family: str, keep: int, in_use: set[str], log: TaskLog) -> list[str]:
    """Deregister ACTIVE revisions of `family` older than the newest `keep`, never one in use."""
    arns: list[str] = []
    token: str | None = None
    while True:
        page = await aws.call("ecs", "list_task_definitions", familyPrefix=family, status="ACTIVE",
                              **({"nextToken": token} if token else {}))
        arns += [a for a in page.get("taskDefinitionArns") or []
                 if a.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family]
        token = page.get("nextToken")
        if not token:
            break
    arns.sort(key=lambda a: int(a.rsplit(":", 1)[-1]), reverse=True)
    gone = [a for a in arns[keep:] if a not in in_use]
    for arn in gone:
        await aws.call("ecs", "deregister_task_definition", taskDefinition=arn)
    if gone:
        log.change(f"clean-up: deregistered {len(gone)} old revision(s) of {family}, kept the newest {keep}")
    return gone


async def prepare(aws: Aws, manifest: Any, svc: dict[str, Any], current: dict[str, Any] | None,
                  desired: int | None, dry_run: bool,
                  log: TaskLog, task_id: str | None = None) -> tuple[str | None, bool, dict[str, Any]]:
    """(task definition ARN, registered now?, plan). A dry run registers nothing (ARN None when a
    manifest would be registered); an ARN is deployed as it is."""
    if is_arn(manifest):
        found = await existing(aws, str(manifest), log)
        arn = str(found["taskDefinitionArn"])
        change = plan(None, None, arn, svc, current, desired)
        describe_plan(change, log)
        return arn, False, change
    td = manifests.task_definition(manifest)
    latest = await services.latest_revision(aws, td["family"])
    change = plan(td, latest, None, svc, current, desired)
    describe_plan(change, log)
    if dry_run:
        return None, False, change
    arn, registered = await services.register_task_definition(aws, td, log, latest, task_id)
    return arn, registered, change
