"""The manager's agent API in the JSON dialect: every body that crosses the wire.

This module is the single source of truth for field names; `docs/protocol.md` documents the same
shapes for people, and the local manager (`devstack`) imports these models so that both ends agree
by construction. Field names are camelCase on the wire, snake_case in Python.
"""

from __future__ import annotations

import enum
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

# re-exported: the limits and id rules are part of the wire's contract
from protocol.limits import ID_PATTERN as ID_PATTERN
from protocol.limits import MAX_ANSWER_BYTES as MAX_ANSWER_BYTES
from protocol.limits import MAX_FRAME_BYTES as MAX_FRAME_BYTES
from protocol.limits import ConnectionId, Id, SequenceNum, Token, Version
from protocol.limits import parse_json as parse_json

T = TypeVar("T")

#: Task payloads larger than this are refused by both ends (bytes of JSON).
MAX_TASK_DATA_BYTES = 1_048_576


class WireModel(BaseModel):
    """camelCase on the wire, tolerant of fields a newer peer adds."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=False
    )

    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)


# --- envelope ----------------------------------------------------------------------------------


class ResponseMessage(WireModel):
    code: str
    level: Literal["INFO", "WARN", "ERROR"] = "ERROR"
    message: str


class Envelope(WireModel, Generic[T]):
    """Every JSON answer of the agent API: `{resource, responseMessages, metaData}`."""

    resource: T | None = None
    response_messages: list[ResponseMessage] = Field(default_factory=list)
    meta_data: dict[str, Any] | None = None


# --- registration and heartbeats ---------------------------------------------------------------


class DelegateType(enum.StrEnum):
    ECS = "ECS"
    SHELL_SCRIPT = "SHELL_SCRIPT"
    DOCKER = "DOCKER"
    KUBERNETES = "KUBERNETES"
    HELM_DELEGATE = "HELM_DELEGATE"


class DelegateParams(WireModel):
    """Register body, ECS keep-alive body and heartbeat body."""

    delegate_id: str | None = None
    account_id: str
    ip: str = ""
    host_name: str
    delegate_name: str | None = None
    delegate_group_name: str | None = None
    delegate_group_id: str | None = None
    delegate_profile_id: str | None = None
    description: str | None = None
    version: str
    delegate_type: str = DelegateType.ECS.value
    delegate_random_token: str | None = None
    sequence_num: str | None = None
    last_heart_beat: int = 0  # epoch millis
    keep_alive_packet: bool = False
    polling_mode_enabled: bool = False
    tags: list[str] = Field(default_factory=list)
    supported_task_types: list[str] = Field(default_factory=list)
    currently_executing_delegate_tasks: list[str] = Field(default_factory=list)
    location: str | None = None
    #: per-process id, so the manager can tell two processes of one delegate apart
    delegate_instance_id: str | None = None
    #: the version of the watcher that started this process; None without a watcher (our addition)
    watcher_version: Version | None = None


class RegisterAction(enum.StrEnum):
    SELF_DESTRUCT = "SELF_DESTRUCT"
    MIGRATE = "MIGRATE"


class DelegateRegisterResponse(WireModel):
    #: empty only with SELF_DESTRUCT (a delegate the manager deleted may not know its id)
    delegate_id: Id | Literal[""]
    action: RegisterAction | None = None
    migrate_url: str | None = Field(default=None, max_length=2048)
    sequence_num: SequenceNum | None = None
    delegate_random_token: Token | None = None
    #: this delegate's connection credential: sent back in the `delegateConnectionId` header of
    #: every later call (heartbeats, stream, acquire, logs, results) for this delegate
    delegate_connection_id: ConnectionId | None = None
    #: the name of the delegate token the manager matched (tokens are named per account)
    delegate_token_name: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _id_unless_leaving(self) -> DelegateRegisterResponse:
        if not self.delegate_id and self.action != RegisterAction.SELF_DESTRUCT:
            raise ValueError("delegateId is required")
        return self


#: the header that carries `DelegateRegisterResponse.delegate_connection_id`
CONNECTION_HEADER = "delegateConnectionId"


class DelegateStatus(enum.StrEnum):
    ENABLED = "ENABLED"
    WAITING_FOR_APPROVAL = "WAITING_FOR_APPROVAL"
    DELETED = "DELETED"


class DelegateHeartbeatResponse(WireModel):
    delegate_id: Id
    status: DelegateStatus = DelegateStatus.ENABLED
    delegate_random_token: Token | None = None
    sequence_number: SequenceNum | None = None


class DelegateUnregisterRequest(WireModel):
    delegate_id: str
    host_name: str
    delegate_group_name: str | None = None
    delegate_instance_id: str | None = None


# --- stream events (manager -> delegate, one JSON object per websocket text frame) -------------


class StreamEventType(enum.StrEnum):
    TASK = "DelegateTaskEvent"
    TASK_ABORT = "DelegateTaskAbortEvent"
    HEARTBEAT_RESPONSE = "DelegateHeartbeatResponseStreaming"
    SELF_DESTRUCT = "SelfDestruct"
    SUPERSEDED = "DelegateConnectionSuperseded"


class DelegateTaskEvent(WireModel):
    event_type: Literal["DelegateTaskEvent"] = "DelegateTaskEvent"
    account_id: Id
    delegate_task_id: Id
    sync: bool = False
    task_type: str | None = Field(default=None, max_length=128)


class DelegateTaskAbortEvent(WireModel):
    event_type: Literal["DelegateTaskAbortEvent"] = "DelegateTaskAbortEvent"
    account_id: Id
    delegate_task_id: Id
    sync: bool = False


class DelegateHeartbeatResponseStreaming(WireModel):
    event_type: Literal["DelegateHeartbeatResponseStreaming"] = (
        "DelegateHeartbeatResponseStreaming"
    )
    delegate_id: Id
    status: DelegateStatus = DelegateStatus.ENABLED
    delegate_random_token: Token | None = None
    sequence_number: SequenceNum | None = None
    response_sent_at: int = 0  # epoch millis


class SelfDestructEvent(WireModel):
    event_type: Literal["SelfDestruct"] = "SelfDestruct"
    delegate_id: str | None = None


class ConnectionSupersededEvent(WireModel):
    """Another process registered as this delegate: this connection may finish what it runs but
    acquires nothing more, and should exit once drained."""

    event_type: Literal["DelegateConnectionSuperseded"] = "DelegateConnectionSuperseded"
    delegate_id: str


class StreamHeartbeat(DelegateParams):
    """delegate -> manager over the websocket: a heartbeat is DelegateParams plus its type."""

    event_type: Literal["DelegateHeartbeat"] = "DelegateHeartbeat"


class TaskEventsResponse(WireModel):
    """Polling mode: `GET agent/delegates/{id}/task-events`."""

    delegate_task_events: list[DelegateTaskEvent | DelegateTaskAbortEvent] = Field(
        default_factory=list
    )


# --- tasks -------------------------------------------------------------------------------------


class TaskStatus(enum.StrEnum):
    QUEUED = "QUEUED"
    VALIDATING = "VALIDATING"
    STARTED = "STARTED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    ERRORED = "ERRORED"
    EXPIRED = "EXPIRED"
    ABORTED = "ABORTED"


class Capability(WireModel):
    """A check the delegate runs before it may take a task (e.g. can it reach this URL)."""

    capability_type: str  # e.g. HTTP, ECS
    params: dict[str, Any] = Field(default_factory=dict)


class CapabilityResult(WireModel):
    capability_type: str
    ok: bool
    message: str = ""


class DelegateTaskPackage(WireModel):
    """The acquire answer. The delegate runs it only if it carries this process's instance id."""

    delegate_task_id: Id
    account_id: Id
    task_type: str = Field(max_length=128)
    data: dict[str, Any] = Field(default_factory=dict)
    sync: bool = False
    timeout_ms: int = Field(default=600_000, ge=0, le=7 * 24 * 3_600_000)
    delegate_id: Id | None = None
    delegate_instance_id: str | None = Field(default=None, max_length=128)
    capabilities: list[Capability] = Field(default_factory=list)


class CapabilityReport(WireModel):
    delegate_instance_id: str
    results: list[CapabilityResult]


class ResponseCode(enum.StrEnum):
    OK = "OK"
    FAILED = "FAILED"
    RETRY_ON_OTHER_DELEGATE = "RETRY_ON_OTHER_DELEGATE"


class TaskResult(WireModel):
    """`POST agent/v2/tasks/{taskId}/delegates/{delegateId}`; the manager applies it once."""

    account_id: str
    response_code: ResponseCode
    #: task-type specific; always has `status` (a final TaskStatus) and `errorMessage` on failure
    response: dict[str, Any] = Field(default_factory=dict)
    delegate_instance_id: str | None = None


class LogLine(WireModel):
    seq: int  # increasing per task (see docs/protocol.md); the manager drops a seq it has
    ts: int  # epoch millis
    level: Literal["INFO", "WARN", "ERROR"] = "INFO"
    message: str


class LogBatch(WireModel):
    lines: list[LogLine]


# --- profiles ----------------------------------------------------------------------------------


class DelegateProfileParams(WireModel):
    """Profile check answer; `resource` null means unchanged."""

    profile_id: Id
    name: str = Field(default="", max_length=512)
    profile_last_updated_at: int = 0
    script_content: str | None = Field(default=None, max_length=262_144)


class ProfileResult(WireModel):
    profile_id: str
    profile_last_updated_at: int
    error: bool
    output: str
