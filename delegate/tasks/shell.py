"""SHELL_SCRIPT: run a bash script under the task's timeout, stream its output, report its exit code.

Also NOOP, the smallest task there is."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from delegate.tasks.process import run_script
from delegate.tasks.registry import TaskContext, TaskInput, TaskOutcome, task_type
from protocol.wire import TaskStatus


class ShellScriptInput(TaskInput):
    script: str = Field(min_length=1, max_length=262_144)
    environment: dict[str, str] = Field(default_factory=dict)
    working_directory: str | None = Field(default=None, alias="workingDirectory")

    @field_validator("working_directory")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_absolute():
            raise ValueError("workingDirectory must be an absolute path")
        return value


class NoopInput(TaskInput):
    """No input: `data` must be empty (or hold only `comment`)."""

    comment: str | None = None


@task_type("NOOP", NoopInput)
async def noop(ctx: TaskContext, data: NoopInput) -> TaskOutcome:
    """Does nothing and succeeds: proves a delegate takes and reports work (and benchmarks it)."""
    return TaskOutcome.ok()


@task_type("SHELL_SCRIPT", ShellScriptInput)
async def shell_script(ctx: TaskContext, data: ShellScriptInput) -> TaskOutcome:
    cwd = Path(data.working_directory) if data.working_directory else None
    if cwd is not None and not cwd.is_dir():
        return TaskOutcome(
            TaskStatus.FAILED, {"exitCode": None},
            f"workingDirectory {cwd} does not exist on this delegate",
        )
    result = await run_script(
        data.script,
        timeout_s=ctx.timeout_s,
        on_stdout=ctx.log.info,
        on_stderr=lambda line: ctx.log.error(f"ERROR: {line}"),
        cwd=cwd,
        env=data.environment,
    )
    if result.timed_out:
        return TaskOutcome(
            TaskStatus.EXPIRED, {"exitCode": None},
            f"script timed out after {ctx.timeout_s:.0f}s and was killed",
        )
    if result.exit_code == 0:
        return TaskOutcome.ok(exitCode=0)
    return TaskOutcome.failed(f"script exited with code {result.exit_code}",
                              exitCode=result.exit_code)
