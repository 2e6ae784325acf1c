"""A task package as the runner gets it: does it belong to the offer, and what does it hold.

`decode` turns a package into its task type and validated input, or a TaskError saying what is wrong
with it (that task fails, nothing else). `mismatch` says why a package does not answer the offer it
was acquired for (another task, account or delegate): such a package is refused and reported.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from delegate.errors import TaskError
from delegate.tasks import registry
from protocol import wire


def decode(package: wire.DelegateTaskPackage) -> tuple[registry.TaskType[Any], Any]:
    """The task type and validated input of a package, or TaskError saying what is wrong with it."""
    kind = registry.get(package.task_type)
    if kind is None:
        raise TaskError(f"unknown task type {package.task_type[:100]!r}; this delegate runs "
                        f"{', '.join(registry.names())}")
    size = len(json.dumps(package.data))
    if size > wire.MAX_TASK_DATA_BYTES:
        raise TaskError(f"task data is {size} bytes; the limit is {wire.MAX_TASK_DATA_BYTES}")
    try:
        return kind, kind.input_model.model_validate(package.data)
    except ValidationError as exc:
        raise TaskError(f"invalid data for {package.task_type}: {_describe(exc)}") from None


def mismatch(task_id: str, account_id: str, delegate_id: str | None,
              package: wire.DelegateTaskPackage) -> str | None:
    """Why a package does not belong to the offer it answers (None if it does)."""
    if package.delegate_task_id != task_id:
        return (f"refused: the package is for task {package.delegate_task_id!r}, "
                f"the offer was for {task_id!r}")
    if package.account_id != account_id:
        return f"refused: the package is for account {package.account_id!r}, not this one"
    if package.delegate_id is not None and package.delegate_id != delegate_id:
        return f"refused: the package names delegate {package.delegate_id!r}, not this one"
    return None


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_input=False, include_url=False)[:5]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "data"
        parts.append(f"{where}: {error.get('msg')}")
    return "; ".join(parts)
