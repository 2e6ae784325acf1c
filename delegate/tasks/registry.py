"""The registry of task types.

A task type is a small unit: a name, a pydantic model for its `data`, and an async handler that gets
a `TaskContext` and the validated input and returns a `TaskOutcome`. Handlers raise `TaskError` for
"this task cannot run as given"; anything else they raise fails only their task.

Heavy modules (boto3 for the ECS types) are imported by the handler module on first use, so the
registry can list every type without loading them.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from protocol.wire import TaskStatus

In = TypeVar("In", bound=BaseModel)


class TaskInput(BaseModel):
    """Base for task inputs: unknown fields are an error, so typos are caught, not ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


@dataclass
class TaskOutcome:
    status: TaskStatus
    response: dict[str, Any] = field(default_factory=dict)
    error_message: str | None = None

    @classmethod
    def ok(cls, **response: Any) -> TaskOutcome:
        return cls(TaskStatus.SUCCEEDED, response)

    @classmethod
    def failed(cls, message: str, **response: Any) -> TaskOutcome:
        return cls(TaskStatus.FAILED, response, message)


class TaskLog:
    """What a handler writes its progress to (implemented by the log shipper)."""

    def info(self, message: str) -> None:
        raise NotImplementedError

    def warn(self, message: str) -> None:
        raise NotImplementedError

    def error(self, message: str) -> None:
        raise NotImplementedError

    def change(self, message: str) -> None:
        """An INFO line recording a change in AWS; the log shipper has it on disk (the task's
        journal) before this returns, so a kill right after loses it not."""
        self.info(message)


@dataclass
class TaskContext:
    task_id: str
    account_id: str
    timeout_s: float
    log: TaskLog
    work_dir: Any  # pathlib.Path; Any to keep this module import-light
    proxy: Any = None  # delegate.proxy.ProxyRules for the task's outgoing calls (AWS), or None


Handler = Callable[[TaskContext, Any], Awaitable[TaskOutcome]]


@dataclass(frozen=True)
class TaskType(Generic[In]):
    name: str
    input_model: type[In]
    handler: Callable[[TaskContext, In], Awaitable[TaskOutcome]]


_types: dict[str, TaskType[Any]] = {}
#: modules that register task types when imported; loaded by `load_builtin_types`
BUILTIN_MODULES = ["delegate.tasks.shell", "delegate.ecs.tasks"]


def task_type(
    name: str, input_model: type[In]
) -> Callable[[Callable[[TaskContext, In], Awaitable[TaskOutcome]]], Callable[..., Any]]:
    def decorate(
        fn: Callable[[TaskContext, In], Awaitable[TaskOutcome]],
    ) -> Callable[[TaskContext, In], Awaitable[TaskOutcome]]:
        if name in _types:
            raise RuntimeError(f"task type {name} registered twice")
        _types[name] = TaskType(name, input_model, fn)
        return fn

    return decorate


def load_builtin_types() -> None:
    for module in BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise


def get(name: str) -> TaskType[Any] | None:
    return _types.get(name)


def names() -> list[str]:
    return sorted(_types)
