"""Manifests (JSON or YAML text, or objects) -> boto3 parameters, validated with clear messages.

Task and service definitions use ECS's API field names (camelCase, as `aws ecs describe-*` prints
them); read-only fields a describe answer carries are dropped so a described object can be pasted
back. Application Auto Scaling manifests may use camelCase or PascalCase keys.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from delegate.errors import TaskError

_TD_READ_ONLY = {
    "taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities",
    "registeredAt", "registeredBy", "deregisteredAt",
}
_SERVICE_READ_ONLY = {
    "serviceArn", "clusterArn", "status", "runningCount", "pendingCount", "deployments", "events",
    "createdAt", "createdBy", "roleArn", "taskSets", "cluster",
}
#: what UpdateService accepts of a service definition (desiredCount is decided separately)
_UPDATE_KEYS = {
    "capacityProviderStrategy", "deploymentConfiguration", "networkConfiguration",
    "placementConstraints", "placementStrategy", "platformVersion", "healthCheckGracePeriodSeconds",
    "enableExecuteCommand", "enableECSManagedTags", "loadBalancers", "propagateTags",
    "serviceRegistries", "serviceConnectConfiguration", "volumeConfigurations",
    "availabilityZoneRebalancing",
}


def load(value: str | dict[str, Any], name: str) -> dict[str, Any]:
    """A manifest as a dict; `name` is the input field, named in every error."""
    if isinstance(value, dict):
        return dict(value)
    try:
        parsed = yaml.safe_load(value) if value.strip() else None  # JSON is YAML too
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise TaskError(f"{name}: not valid JSON or YAML{at}; fix the manifest") from None
    if not isinstance(parsed, dict):
        raise TaskError(f"{name}: expected a JSON/YAML object, got {type(parsed).__name__}")
    return parsed


def load_list(value: str | list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            raise TaskError(f"{name}: not valid JSON or YAML; fix the manifest") from None
        value = parsed if isinstance(parsed, list) else [parsed]
    items = []
    for i, item in enumerate(value):
        items.append(load(item, f"{name}[{i}]") if isinstance(item, str | dict) else _bad(name, i))
    return items


def _bad(name: str, i: int) -> dict[str, Any]:
    raise TaskError(f"{name}[{i}]: expected an object")


def task_definition(value: str | dict[str, Any]) -> dict[str, Any]:
    params = {k: v for k, v in load(value, "taskDefinition").items() if k not in _TD_READ_ONLY}
    if not isinstance(params.get("family"), str) or not params["family"]:
        raise TaskError("taskDefinition: 'family' is required (the task definition family name)")
    containers = params.get("containerDefinitions")
    if not isinstance(containers, list) or not containers:
        raise TaskError("taskDefinition: 'containerDefinitions' must list at least one container")
    for i, container in enumerate(containers):
        if not isinstance(container, dict) or not container.get("name") or not container.get("image"):
            raise TaskError(f"taskDefinition.containerDefinitions[{i}]: 'name' and 'image' are required")
    return params


def service_definition(value: str | dict[str, Any]) -> dict[str, Any]:
    params = {k: v for k, v in load(value, "serviceDefinition").items() if k not in _SERVICE_READ_ONLY}
    if not isinstance(params.get("serviceName"), str) or not params["serviceName"]:
        raise TaskError("serviceDefinition: 'serviceName' is required")
    count = params.get("desiredCount")
    if count is not None and (not isinstance(count, int) or count < 0):
        raise TaskError(f"serviceDefinition.desiredCount={count!r}: give an integer >= 0")
    return params


def update_params(service: dict[str, Any]) -> dict[str, Any]:
    """The part of a service definition UpdateService can change."""
    return {k: v for k, v in service.items() if k in _UPDATE_KEYS}


def pascal(value: Any) -> Any:
    """camelCase keys -> PascalCase, recursively (Application Auto Scaling's field names)."""
    if isinstance(value, dict):
        return {(k[:1].upper() + k[1:]): pascal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [pascal(v) for v in value]
    return value


def contains(actual: Any, desired: Any) -> bool:
    """Does `actual` (a describe answer) already say everything `desired` (a manifest) says?
    AWS adds defaults to what it stores, so extra fields in `actual` do not count as a change."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(
            contains(actual.get(k), v) for k, v in desired.items() if v is not None
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(desired)
            and all(contains(a, d) for a, d in zip(actual, desired, strict=True))
        )
    if isinstance(desired, str | int | float | bool) and isinstance(actual, str | int | float | bool):
        return str(actual) == str(desired) if type(actual) is not type(desired) else actual == desired
    return bool(actual == desired)


def same_task_definition(latest: dict[str, Any], params: dict[str, Any]) -> bool:
    """Is the family's `latest` revision what registering `params` would make? AWS echoes a revision
    with defaults added and each container's environment in its own order; tags are not part of a
    revision. (The delegate's deploys and `harness-delegate install-ecs` both ask this.)"""
    if latest.get("status", "ACTIVE") != "ACTIVE":
        return False
    wanted = {k: v for k, v in params.items() if k != "tags"}
    return contains(_env_sorted(latest), _env_sorted(wanted))


def _env_sorted(definition: dict[str, Any]) -> dict[str, Any]:
    containers = definition.get("containerDefinitions")
    if not isinstance(containers, list):
        return definition
    return {**definition, "containerDefinitions": [
        {**c, "environment": sorted(c["environment"], key=lambda e: str(e.get("name")))}
        if isinstance(c, dict) and isinstance(c.get("environment"), list) else c
        for c in containers]}


def dump(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)
