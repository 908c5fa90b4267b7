"""Typed shapes of ASP v1 messages, for code that builds or reads them.

These mirror spec/schema for the type checker only; tests/spec/test_drift.py fails when a field,
or whether it is required, differs from the schema. Events are plain dicts at run time, so the
hot path pays nothing for them.
"""

from typing import Any, Literal, NotRequired, TypedDict

FinishReason = Literal["stop", "cancelled", "error", "length"]

# The registry's error codes and close-code names (spec/registry.yaml), so a mistyped code fails
# mypy; tests/spec/test_drift.py keeps them equal to the registry. Vendor error codes (`x-...`)
# are plain strings.
ErrorCode = Literal[
    "invalid_json",
    "unsupported_frame",
    "invalid_message",
    "unknown_type",
    "run_in_progress",
    "no_active_run",
    "rate_limited",
    "conversation_not_found",
    "resume_failed",
    "model_error",
    "internal_error",
    "shutting_down",
]
CloseCodeName = Literal[
    "normal_closure",
    "going_away",
    "protocol_error",
    "abnormal_closure",
    "invalid_payload",
    "policy_violation",
    "message_too_big",
    "internal_error",
    "service_restart",
    "try_again_later",
    "unsupported_version",
    "unauthorized",
    "superseded",
    "idle_timeout",
    "slow_consumer",
    "heartbeat_timeout",
]


class RateLimit(TypedDict):
    messages: int
    window_ms: int


class Limits(TypedDict):
    max_message_bytes: int
    heartbeat_interval_ms: int
    idle_timeout_ms: int
    rate_limit: RateLimit
    replay_window: int
    session_ttl_ms: NotRequired[int]
    max_connections: NotRequired[int]
    max_event_bytes: NotRequired[int]


class User(TypedDict):
    id: str
    name: NotRequired[str]


class ServerInfo(TypedDict, total=False):
    name: str
    version: str


class Usage(TypedDict, total=False):
    input_tokens: int
    output_tokens: int
    requests: int


class SessionEvent(TypedDict):
    type: Literal["session"]
    seq: int
    protocol_version: str
    session_id: str
    conversation_id: str
    user: User
    limits: Limits
    capabilities: list[str]
    server: NotRequired[ServerInfo]


class HistoryEvent(TypedDict):
    type: Literal["history"]
    seq: int
    conversation_id: str
    messages: list[dict[str, Any]]
    truncated: NotRequired[bool]
    omitted: NotRequired[int]


class ResumedEvent(TypedDict):
    type: Literal["resumed"]
    seq: int
    session_id: str
    replay_from: int
    replay_count: int


class RunStartedEvent(TypedDict):
    type: Literal["run_started"]
    seq: int
    run_id: str
    message_id: str
    conversation_id: str


class TextDeltaEvent(TypedDict):
    type: Literal["text_delta"]
    seq: int
    run_id: str
    delta: str


class ReasoningDeltaEvent(TypedDict):
    type: Literal["reasoning_delta"]
    seq: int
    run_id: str
    delta: str


class ToolCallDeltaEvent(TypedDict):
    type: Literal["tool_call_delta"]
    seq: int
    run_id: str
    tool_call_id: str
    name: NotRequired[str]
    delta: str


class ToolCallEvent(TypedDict):
    type: Literal["tool_call"]
    seq: int
    run_id: str
    tool_call_id: str
    name: str
    arguments: dict[str, Any]
    truncated: NotRequired[bool]


class ToolResultEvent(TypedDict):
    type: Literal["tool_result"]
    seq: int
    run_id: str
    tool_call_id: str
    content: Any
    is_error: bool
    truncated: NotRequired[bool]


class CompleteEvent(TypedDict):
    type: Literal["complete"]
    seq: int
    run_id: str
    finish_reason: FinishReason
    usage: NotRequired[Usage]


class ErrorEvent(TypedDict):
    type: Literal["error"]
    seq: int
    code: str
    message: str
    retryable: bool
    retry_after_ms: NotRequired[int]
    run_id: NotRequired[str]
    message_id: NotRequired[str]


class PongEvent(TypedDict):
    type: Literal["pong"]
    seq: int
    id: NotRequired[str]


class MessageMessage(TypedDict):
    type: Literal["message"]
    id: NotRequired[str]
    content: str
    conversation_id: NotRequired[str]


class CancelMessage(TypedDict):
    type: Literal["cancel"]
    id: NotRequired[str]
    run_id: NotRequired[str]


class PingMessage(TypedDict):
    type: Literal["ping"]
    id: NotRequired[str]


class ResumeMessage(TypedDict):
    type: Literal["resume"]
    id: NotRequired[str]
    session_id: str
    last_seq: int


SERVER_EVENTS: dict[str, type] = {
    "session": SessionEvent,
    "history": HistoryEvent,
    "resumed": ResumedEvent,
    "run_started": RunStartedEvent,
    "text_delta": TextDeltaEvent,
    "reasoning_delta": ReasoningDeltaEvent,
    "tool_call_delta": ToolCallDeltaEvent,
    "tool_call": ToolCallEvent,
    "tool_result": ToolResultEvent,
    "complete": CompleteEvent,
    "error": ErrorEvent,
    "pong": PongEvent,
}
CLIENT_MESSAGES: dict[str, type] = {
    "message": MessageMessage,
    "cancel": CancelMessage,
    "ping": PingMessage,
    "resume": ResumeMessage,
}
# Nested objects held to their schema location too.
NESTED: dict[str, tuple[str, tuple[str, ...], type]] = {
    "session.limits": ("session", ("properties", "limits"), Limits),
    "session.limits.rate_limit": ("session", ("properties", "limits", "properties", "rate_limit"), RateLimit),
    "session.user": ("session", ("properties", "user"), User),
    "session.server": ("session", ("properties", "server"), ServerInfo),
    "common.usage": ("common", ("$defs", "usage"), Usage),
}
