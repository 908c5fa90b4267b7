"""Builders of server events. They return unsequenced dicts: the session assigns seq on sending."""

from __future__ import annotations

from typing import Any

from spec import PROTOCOL_VERSION
from spec.messages import ErrorCode, FinishReason, Limits, Usage
from spec.registry import is_retryable

Event = dict[str, Any]


def session(
    *,
    session_id: str,
    conversation_id: str,
    user_id: str,
    limits: Limits,
    capabilities: list[str],
    version: str,
) -> Event:
    return {
        "type": "session",
        "protocol_version": PROTOCOL_VERSION,
        "session_id": session_id,
        "conversation_id": conversation_id,
        "user": {"id": user_id},
        "limits": dict(limits),
        "capabilities": capabilities,
        "server": {"name": "asp-reference-server", "version": version},
    }


def history(conversation_id: str, messages: list[dict[str, Any]]) -> Event:
    return {"type": "history", "conversation_id": conversation_id, "messages": messages}


def resumed(session_id: str, replay_from: int, replay_count: int) -> Event:
    return {
        "type": "resumed",
        "session_id": session_id,
        "replay_from": replay_from,
        "replay_count": replay_count,
    }


def run_started(run_id: str, message_id: str, conversation_id: str) -> Event:
    return {
        "type": "run_started",
        "run_id": run_id,
        "message_id": message_id,
        "conversation_id": conversation_id,
    }


def text_delta(run_id: str, delta: str) -> Event:
    return {"type": "text_delta", "run_id": run_id, "delta": delta}


def reasoning_delta(run_id: str, delta: str) -> Event:
    return {"type": "reasoning_delta", "run_id": run_id, "delta": delta}


def tool_call(run_id: str, tool_call_id: str, name: str, arguments: dict[str, Any]) -> Event:
    return {
        "type": "tool_call",
        "run_id": run_id,
        "tool_call_id": tool_call_id,
        "name": name,
        "arguments": arguments,
    }


def tool_result(run_id: str, tool_call_id: str, content: Any, is_error: bool) -> Event:
    return {
        "type": "tool_result",
        "run_id": run_id,
        "tool_call_id": tool_call_id,
        "content": content,
        "is_error": is_error,
    }


def complete(run_id: str, finish_reason: FinishReason, usage: Usage | None = None) -> Event:
    event: Event = {"type": "complete", "run_id": run_id, "finish_reason": finish_reason}
    if usage:
        event["usage"] = dict(usage)
    return event


def error(
    code: ErrorCode,
    message: str,
    *,
    run_id: str | None = None,
    message_id: str | None = None,
    retry_after_ms: int | None = None,
) -> Event:
    event: Event = {"type": "error", "code": code, "message": message, "retryable": is_retryable(code)}
    if run_id is not None:
        event["run_id"] = run_id
    if message_id is not None:
        event["message_id"] = message_id
    if retry_after_ms is not None:
        event["retry_after_ms"] = retry_after_ms
    return event


def pong(ping_id: str | None) -> Event:
    return {"type": "pong", "id": ping_id} if ping_id is not None else {"type": "pong"}


COALESCABLE = frozenset({"text_delta", "reasoning_delta"})
