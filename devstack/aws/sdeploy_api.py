"""The service-deployments API moto lacks, added to moto's ECS request handler at start-up:
ListServiceDeployments, DescribeServiceDeployments, DescribeServiceRevisions,
StopServiceDeployment (stopType ROLLBACK) and ContinueServiceDeployment (PAUSE hooks)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from moto.core.responses import ActionResult
from moto.ecs.exceptions import InvalidParameterException
from moto.ecs.responses import EC2ContainerServiceResponse

from devstack.aws import ecs_model, sdeploys
from devstack.aws.sdeploys import Record, Revision


class _NotFound(InvalidParameterException):
    code = "ServiceDeploymentNotFoundException"


class _Conflict(InvalidParameterException):
    code = "ConflictException"


_installed = False
_sync: Any = None  # callable(backend, service): brings records up to date before answering


def install(sync: Any) -> None:
    global _installed, _sync
    _sync = sync
    if _installed:
        return
    _installed = True
    for name, handler in (
        ("list_service_deployments", _list), ("describe_service_deployments", _describe),
        ("describe_service_revisions", _revisions), ("stop_service_deployment", _stop),
        ("continue_service_deployment", _continue),
    ):
        handler.__name__ = name
        setattr(EC2ContainerServiceResponse, name, handler)


def _service(self: Any) -> tuple[Any, Any]:
    backend = self.ecs_backend
    name = self._get_param("service")
    if not name:
        raise InvalidParameterException("service: give the name or ARN of the service")
    service = backend._get_service(self._get_param("cluster", "default"), name.split("/")[-1])
    _sync(backend, service)
    return backend, service


def _list(self: Any) -> Any:
    with ecs_model.LOCK:
        _, service = _service(self)
        statuses = self._get_param("status") or []
        window = self._get_param("createdAt") or {}
        after, before = window.get("after"), window.get("before")
        found = []
        for record in reversed(sdeploys.records(service)):
            if statuses and record.status not in statuses:
                continue
            stamp = record.created_at.timestamp()
            if after is not None and stamp < _seconds(after):
                continue
            if before is not None and stamp > _seconds(before):
                continue
            found.append(record.brief())
        limit = int(self._get_param("maxResults") or 20)
        start = int(self._get_param("nextToken") or 0)
        page = found[start:start + limit]
        answer: dict[str, Any] = {"serviceDeployments": page}
        if start + limit < len(found):
            answer["nextToken"] = str(start + limit)
        return ActionResult(answer)


def _seconds(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def _lookup(arn: str) -> tuple[Any, Any, Record | Revision] | None:
    found = sdeploys.find(arn)
    if found is not None:
        _sync(found[0], found[1])
    return found


def _describe(self: Any) -> Any:
    with ecs_model.LOCK:
        items, failures = [], []
        for arn in self._get_param("serviceDeploymentArns") or []:
            found = _lookup(arn)
            if found is None or not isinstance(found[2], Record):
                failures.append({"arn": arn, "reason": "MISSING"})
            else:
                items.append(found[2].api())
        return ActionResult({"serviceDeployments": items, "failures": failures})


def _revisions(self: Any) -> Any:
    with ecs_model.LOCK:
        items, failures = [], []
        for arn in self._get_param("serviceRevisionArns") or []:
            found = _lookup(arn)
            if found is None or not isinstance(found[2], Revision):
                failures.append({"arn": arn, "reason": "MISSING"})
            else:
                items.append(found[2].api())
        return ActionResult({"serviceRevisions": items, "failures": failures})


def _record(arn: str | None) -> Record:
    found = _lookup(arn or "")
    if found is None or not isinstance(found[2], Record):
        raise _NotFound(f"Service deployment {arn} was not found.")
    return found[2]


def _stop(self: Any) -> Any:
    with ecs_model.LOCK:
        arn = self._get_param("serviceDeploymentArn")
        stop_type = self._get_param("stopType") or "ROLLBACK"
        if stop_type != "ROLLBACK":
            raise InvalidParameterException(f"stopType={stop_type!r}: the valid value is ROLLBACK")
        record = _record(arn)
        if record.status not in ("PENDING", "IN_PROGRESS"):
            raise _Conflict(f"Service deployment {arn} is {record.status}; only a PENDING or "
                            "IN_PROGRESS service deployment can be stopped.")
        record.stop_requested = "Service deployment rolled back because of a StopServiceDeployment request."
        record.set("ROLLBACK_REQUESTED", record.stop_requested)  # the next tick starts the rollback
        return ActionResult({"serviceDeploymentArn": arn})


def _continue(self: Any) -> Any:
    with ecs_model.LOCK:
        arn = self._get_param("serviceDeploymentArn")
        hook_id = self._get_param("hookId")
        action = self._get_param("action") or "CONTINUE"
        if action not in ("CONTINUE", "ROLLBACK"):
            raise InvalidParameterException(f"action={action!r}: give CONTINUE or ROLLBACK")
        record = _record(arn)
        hook = next((h for h in record.hooks if h["hookId"] == hook_id), None)
        if hook is None:
            raise InvalidParameterException(f"hookId={hook_id!r}: no such lifecycle hook in {arn}")
        if hook["status"] != "AWAITING_ACTION":
            raise _Conflict(f"Lifecycle hook {hook_id} is {hook['status']}, not AWAITING_ACTION.")
        hook["status"] = "SUCCEEDED" if action == "CONTINUE" else "FAILED"
        record.updated_at = ecs_model.now()
        return ActionResult({"serviceDeploymentArn": arn})
