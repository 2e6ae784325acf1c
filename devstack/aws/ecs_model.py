"""The one place that knows moto's insides (moto pinned at 5.2.1; see pyproject.toml).

moto's ECS stores services, deployments and tasks as plain Python objects and serialises whatever
attributes they carry, so the scheduler makes ECS behave by changing those objects directly. This
module holds everything that depends on moto's internal layout:

- `LOCK`: one re-entrant lock taken around every HTTP request (see `serialized_app`) and around every
  scheduler tick, so a client never sees a half-made change and moto's dicts never change under it;
- `install(hooks)`: patches moto's ECS request handlers once per process. CreateService keeps
  `deploymentConfiguration` and `clientToken` (moto drops both) and refuses a second ACTIVE service
  of the same name; UpdateService is re-implemented (moto's resets runningCount and rewrites the
  deployment in place); RunTask honours `clientToken` and runs on a cluster without container
  instances; ListTasks filters by `serviceName` and defaults to desiredStatus RUNNING, as ECS does;
- small accessors: make a task, set its status, register it in target groups, write an event.

Patches are made on moto's classes at start-up, never by editing site-packages.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

from moto.core.responses import ActionResult
from moto.ec2.models import ec2_backends
from moto.ec2.models.elastic_network_interfaces import NetworkInterface
from moto.ec2.utils import random_private_ip
from moto.ecs.exceptions import InvalidParameterException, ServiceNotFoundException
from moto.ecs.models import EC2ContainerServiceBackend, Task, ecs_backends
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.elbv2.models import elbv2_backends
from moto.moto_api import state_manager

LOCK = threading.RLock()

# Side state lives on moto's own objects, so moto's reset (POST /moto-api/reset) drops it too.
_STATE_ATTR = "_devstack_state"
_TOKEN_ATTR = "_devstack_client_token"  # noqa: S105 (an attribute name)
_RUN_TOKENS_ATTR = "_devstack_run_tokens"

DEFAULT_DEPLOYMENT_CONFIGURATION: dict[str, Any] = {
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
}
MAX_EVENTS = 100  # ECS keeps the latest 100 service events


class Hooks(Protocol):
    """What the scheduler is told synchronously, inside the request that caused it."""

    def service_created(self, backend: Any, service: Any) -> None: ...

    def service_updated(self, backend: Any, service: Any, new_deployment: bool) -> None: ...

    def tasks_run(self, backend: Any, tasks: list[Any]) -> None: ...


class _ServiceNotActive(InvalidParameterException):
    code = "ServiceNotActiveException"


_hooks: Hooks | None = None
_installed = False


def now() -> datetime:
    return datetime.now(UTC)


def install(hooks: Hooks) -> None:
    """Patch moto once per process and make tasks stay RUNNING until something stops them."""
    global _hooks, _installed
    with LOCK:
        _hooks = hooks
        # moto moves a task one lifecycle step per DescribeTasks call by default; the scheduler
        # owns task states instead, so moto's own progression is switched off.
        state_manager.set_transition(
            model_name="ecs::task", transition={"progression": "manual", "times": 10**12}
        )
        if _installed:
            return
        _installed = True
        # moto's ENI only gets private_dns_name in a VPC with DNS hostnames, yet its ECS Task reads
        # it unconditionally; real ECS needs no such VPC setting.
        if not hasattr(NetworkInterface, "private_dns_name"):
            NetworkInterface.private_dns_name = None  # type: ignore[assignment]
        _patch_response("create_service", _create_service)
        _patch_response("update_service", _update_service)
        _patch_response("run_task", _run_task)
        original_list_tasks = EC2ContainerServiceBackend.list_tasks

        def list_tasks(
            self: Any,
            cluster_str: str | None = None,
            container_instance: str | None = None,
            family: str | None = None,
            started_by: str | None = None,
            service_name: str | None = None,
            desiredStatus: str | None = None,  # moto's parameter name
        ) -> list[Any]:
            tasks = original_list_tasks(
                self,
                cluster_str,
                container_instance,
                family,
                started_by,
                None,
                desiredStatus or "RUNNING",
            )
            if service_name:
                group = f"service:{service_name.split('/')[-1]}"
                tasks = [t for t in tasks if t.group == group]
            return list(tasks)

        setattr(EC2ContainerServiceBackend, "list_tasks", list_tasks)  # noqa: B010


def _patch_response(name: str, replacement: Callable[[Any, Callable[[Any], Any]], Any]) -> None:
    original = getattr(EC2ContainerServiceResponse, name)

    def handler(self: Any) -> Any:
        return replacement(self, original)

    handler.__name__ = name
    setattr(EC2ContainerServiceResponse, name, handler)


def _require_hooks() -> Hooks:
    if _hooks is None:  # pragma: no cover - install() always sets them
        raise RuntimeError("devstack.aws.ecs_model.install() was not called")
    return _hooks


# --- request handlers -----------------------------------------------------------------------


def merge_deployment_configuration(
    current: dict[str, Any] | None, given: dict[str, Any] | None
) -> dict[str, Any]:
    merged = dict(current or DEFAULT_DEPLOYMENT_CONFIGURATION)
    merged.update({k: v for k, v in (given or {}).items() if v is not None})
    breaker = dict(DEFAULT_DEPLOYMENT_CONFIGURATION["deploymentCircuitBreaker"])
    breaker.update(merged.get("deploymentCircuitBreaker") or {})
    merged["deploymentCircuitBreaker"] = breaker
    low, high = merged.get("minimumHealthyPercent"), merged.get("maximumPercent")
    if not isinstance(low, int) or not 0 <= low <= 100:
        raise InvalidParameterException(
            f"deploymentConfiguration.minimumHealthyPercent={low!r}: give an integer 0-100"
        )
    if not isinstance(high, int) or high < 100:
        raise InvalidParameterException(
            f"deploymentConfiguration.maximumPercent={high!r}: give an integer >= 100"
        )
    return merged


def _check_network(backend: Any, task_definition_str: str | None, network: Any) -> None:
    if task_definition_str and not network:
        task_definition = backend.describe_task_definition(task_definition_str)
        if task_definition.network_mode == "awsvpc":
            raise InvalidParameterException(
                "Network Configuration must be provided when networkMode 'awsvpc' is specified."
            )


def _create_service(self: Any, original: Callable[[Any], Any]) -> Any:
    with LOCK:
        backend = self.ecs_backend
        cluster = backend._get_cluster(self._get_param("cluster", "default"))
        name = self._get_param("serviceName")
        token = self._get_param("clientToken")
        existing = backend.services.get(f"{cluster.name}:{name}")
        if existing is not None and existing.status == "ACTIVE":
            if token and getattr(existing, _TOKEN_ATTR, None) == token:
                return ActionResult({"service": existing})
            raise InvalidParameterException("Creation of service was not idempotent.")
        deployment_configuration = merge_deployment_configuration(
            None, self._get_param("deploymentConfiguration")
        )
        _check_network(backend, self._get_param("taskDefinition"), self._get_param("networkConfiguration"))
        result = original(self)
        service = backend.services[f"{cluster.name}:{name}"]
        setattr(service, _TOKEN_ATTR, token)
        service.deployment_configuration = deployment_configuration
        service.health_check_grace_period_seconds = self._get_int_param("healthCheckGracePeriodSeconds")
        service.enable_execute_command = bool(self._get_param("enableExecuteCommand", False))
        service.created_at = now()
        _require_hooks().service_created(backend, service)
        return result


def _update_service(self: Any, original: Callable[[Any], Any]) -> Any:
    del original  # moto's version fights the scheduler; this one replaces it
    with LOCK:
        backend = self.ecs_backend
        cluster_str = self._get_param("cluster", "default")
        service_str = self._get_param("service")
        if not service_str:
            raise InvalidParameterException("service: give the name or ARN of the service")
        service = backend._get_service(cluster_str, service_str.split("/")[-1])
        if service is None:  # pragma: no cover - moto raises
            raise ServiceNotFoundException
        if service.status != "ACTIVE":
            raise _ServiceNotActive("Service was not ACTIVE.")
        new_deployment = bool(self._get_param("forceNewDeployment", False))
        task_definition_str = self._get_param("taskDefinition")
        if task_definition_str:
            arn = backend.describe_task_definition(task_definition_str).arn
            new_deployment |= arn != service.task_definition
            service.task_definition = arn
        network = self._get_param("networkConfiguration")
        if network is not None:
            network = service._validate_network(network)
            new_deployment |= network != service.network_configuration
            service.network_configuration = network
        _check_network(backend, service.task_definition, service.network_configuration)
        load_balancers = self._get_param("loadBalancers")
        if load_balancers is not None:
            new_deployment |= load_balancers != service.load_balancers
            service.load_balancers = load_balancers
        platform_version = self._get_param("platformVersion")
        if platform_version is not None:
            new_deployment |= platform_version != service.platform_version
            service.platform_version = platform_version
        config = self._get_param("deploymentConfiguration")
        if config is not None:
            service.deployment_configuration = merge_deployment_configuration(
                getattr(service, "deployment_configuration", None), config
            )
        desired = self._get_int_param("desiredCount")
        if desired is not None:
            if desired < 0:
                raise InvalidParameterException(f"desiredCount={desired}: give an integer >= 0")
            service.desired_count = desired
        grace = self._get_int_param("healthCheckGracePeriodSeconds")
        if grace is not None:
            service.health_check_grace_period_seconds = grace
        _require_hooks().service_updated(backend, service, new_deployment)
        return ActionResult({"service": service})


def _run_task(self: Any, original: Callable[[Any], Any]) -> Any:
    with LOCK:
        backend = self.ecs_backend
        cluster = backend._get_cluster(self._get_param("cluster", "default"))
        token = self._get_param("clientToken")
        tokens: dict[tuple[str, str], list[Any]] = backend.__dict__.setdefault(_RUN_TOKENS_ATTR, {})
        if token and (cluster.name, token) in tokens:
            return ActionResult({"tasks": tokens[(cluster.name, token)], "failures": []})
        launch_type = self._get_param("launchType")
        if launch_type not in (None, "EC2") or not backend.container_instances.get(cluster.name):
            # No capacity is modelled: Fargate tasks, and tasks on a cluster without container
            # instances, are placed at once (moto's own path would fail on both).
            task_definition = backend.describe_task_definition(self._get_param("taskDefinition"))
            count = self._get_int_param("count", 1)
            if not 1 <= count <= 10:
                raise InvalidParameterException(f"count={count}: give an integer 1-10")
            tasks = [
                create_task(
                    backend,
                    cluster.name,
                    task_definition.arn,
                    group=self._get_param("group") or f"family:{task_definition.family}",
                    started_by=self._get_param("startedBy") or "",
                    launch_type=launch_type or "",
                    network_configuration=self._get_param("networkConfiguration"),
                    overrides=self._get_param("overrides"),
                    tags=self._get_param("tags"),
                    platform_version=self._get_param("platformVersion"),
                )
                for _ in range(count)
            ]
            result = ActionResult({"tasks": tasks, "failures": []})
        else:
            result = original(self)
            tasks = list(result.result["tasks"])
        _require_hooks().tasks_run(backend, tasks)
        if token:
            tokens[(cluster.name, token)] = tasks
        return result


# --- accessors for the scheduler -----------------------------------------------------------


def backends() -> Iterator[Any]:
    """Every ECS backend (account x region) that exists so far."""
    for account in list(dict.values(ecs_backends)):
        yield from list(dict.values(account))


def get_state(obj: Any) -> Any:
    return getattr(obj, _STATE_ATTR, None)


def set_state(obj: Any, state: Any) -> None:
    setattr(obj, _STATE_ATTR, state)


def all_tasks(backend: Any) -> list[Any]:
    return [task for tasks in list(backend.tasks.values()) for task in list(tasks.values())]


def forget_task(backend: Any, task: Any) -> None:
    backend.tasks.get(task.cluster_name, {}).pop(task.task_arn, None)


def current_service(backend: Any, service: Any) -> bool:
    """Is this service object still the live one under its name (not deleted or replaced)?"""
    key = f"{service.cluster_name}:{service.name}"
    return backend.services.get(key) is service and service.status == "ACTIVE"


def create_task(
    backend: Any,
    cluster_name: str,
    task_definition_arn: str,
    *,
    group: str,
    started_by: str,
    launch_type: str,
    network_configuration: dict[str, Any] | None,
    overrides: dict[str, Any] | None = None,
    tags: list[dict[str, str]] | None = None,
    platform_version: str | None = None,
) -> Any:
    cluster = backend._get_cluster(cluster_name)
    task_definition = backend.describe_task_definition(task_definition_arn)
    task: Any = Task(
        cluster=cluster,
        task_definition=task_definition,
        container_instance_arn=None,
        resource_requirements=None,
        backend=backend,
        group=group,
        launch_type=launch_type,
        overrides=overrides or {},
        started_by=started_by,
        tags=tags or [],
        networking_configuration=network_configuration or None,
        platform_version=platform_version,
    )
    backend.tasks.setdefault(cluster.name, {})[task.task_arn] = task
    task.created_at = now()
    task.cpu, task.memory = task_definition.cpu, task_definition.memory
    set_status(task, "PROVISIONING")
    return task


def container_definitions(backend: Any, task: Any) -> list[dict[str, Any]]:
    return list(backend.describe_task_definition(task.task_definition_arn).container_definitions)


def set_status(task: Any, last: str, desired: str | None = None) -> None:
    """Move a task (and its containers) to `last`; timestamps follow ECS's field names."""
    task.last_status = last
    if desired:
        task.desired_status = desired
    for container in task.containers:
        container.last_status = {"PROVISIONING": "PENDING", "DEACTIVATING": "RUNNING"}.get(last, last)
        if last != "STOPPED":
            container.exitCode = None  # ECS reports no exit code until the container stops
    at = now()
    if last == "RUNNING":
        task.started_at = at
        task.pull_started_at = task.pull_stopped_at = at
    elif last == "DEACTIVATING":
        task.stopping_at = at
    elif last == "STOPPED":
        task.stopped_at = task.execution_stopped_at = at
        task.desired_status = "STOPPED"
        task.stopping_at = getattr(task, "stopping_at", None) or at


def set_exit(task: Any, exit_code: int | None, stop_code: str, reason: str) -> None:
    task.stop_code = stop_code
    task.stopped_reason = reason
    for container in task.containers:
        container.exitCode = exit_code
        if exit_code is None:
            container.reason = reason


def task_id(task: Any) -> str:
    return str(task.task_arn).split("/")[-1]


def release_network(backend: Any, task: Any) -> None:
    """Delete the task's ENI once it is STOPPED (moto would keep it forever)."""
    ec2 = ec2_backends[backend.account_id][backend.region_name]
    for attachment in task.attachments:
        for detail in attachment.get("details", []):
            if detail.get("name") == "networkInterfaceId":
                ec2.enis.pop(detail.get("value"), None)
        attachment["status"] = "DELETED"


def task_ip(task: Any) -> str:
    for attachment in task.attachments:
        for detail in attachment.get("details", []):
            if detail.get("name") == "privateIPv4Address":
                return str(detail["value"])
    ip = getattr(task, "_devstack_ip", None)
    if ip is None:
        ip = random_private_ip()
        task._devstack_ip = ip
    return str(ip)


def register_targets(
    backend: Any, service: Any, task: Any, load_balancers: list[dict[str, Any]] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Register a RUNNING service task in each of its service's target groups (or those given)."""
    elbv2 = elbv2_backends[backend.account_id][backend.region_name]
    registered: list[tuple[str, dict[str, Any]]] = []
    for lb in load_balancers if load_balancers is not None else service.load_balancers or []:
        arn = lb.get("targetGroupArn")
        group = elbv2.target_groups.get(arn) if arn else None
        if group is None:
            continue
        target_id = task_ip(task)
        if group.target_type == "instance" and task.container_instance_arn:
            instance = backend.container_instances.get(task.cluster_name, {}).get(
                task.container_instance_arn.split("/")[-1]
            )
            if instance is not None:
                target_id = instance.ec2_instance_id
        target = {"Id": target_id, "Port": lb.get("containerPort") or group.port}
        group.register([target])
        registered.append((str(arn), target))
    return registered


def elbv2_of(backend: Any) -> Any:
    return elbv2_backends[backend.account_id][backend.region_name]


def begin_deregister(backend: Any, targets: list[tuple[str, dict[str, Any]]]) -> None:
    """Targets go to `draining` (describe_target_health shows Target.DeregistrationInProgress)."""
    elbv2 = elbv2_backends[backend.account_id][backend.region_name]
    for arn, target in targets:
        group = elbv2.target_groups.get(arn)
        if group is not None and target["Id"] in group.targets:
            group.terminated_targets[target["Id"]] = group.targets.pop(target["Id"])


def finish_deregister(backend: Any, targets: list[tuple[str, dict[str, Any]]]) -> None:
    """Targets leave the group (describe_target_health shows `unused`, Target.NotRegistered)."""
    elbv2 = elbv2_backends[backend.account_id][backend.region_name]
    for arn, target in targets:
        group = elbv2.target_groups.get(arn)
        if group is None:
            continue
        entry = group.targets.pop(target["Id"], None) or group.terminated_targets.pop(target["Id"], None)
        if entry is not None:
            group.deregistered_targets[target["Id"]] = entry


def add_event(service: Any, message: str) -> None:
    """Newest first, each with an id, as DescribeServices returns them."""
    service.events.insert(0, {"id": str(uuid.uuid4()), "createdAt": now(), "message": message})
    del service.events[MAX_EVENTS:]
