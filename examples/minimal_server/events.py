"""Builders of the server events this server sends, one function per event type (PROTOCOL.md section 7).

They return events without `seq`: the session numbers every event as it emits it (ASP-ENV-002).
"""

from __future__ import annotations

from typing import Any

from examples.minimal_server.codes import PROTOCOL_VERSION, retryable
from examples.minimal_server.config import Config

Event = dict[str, Any]
SERVER = {"name": "asp-minimal-server", "version": "0.1.0"}


def session(config: Config, session_id: str, conversation_id: str, user_id: str) -> Event:
    """The first event (ASP-SES-001..004): the limits this server enforces and what it implements.

    With `minimal_session` only the required members and limits are announced; the optional
    ones (`session_ttl_ms`, `max_connections`, `server`) are left out. `max_event_bytes` is
    optional in session.json but a 1.1 server MUST announce it (ASP-LIM-011), so it stays.
    """
    limits: Event = {
        "max_message_bytes": config.max_message_bytes,
        "heartbeat_interval_ms": config.heartbeat_interval_ms,
        "idle_timeout_ms": config.idle_timeout_ms,
        "rate_limit": {"messages": config.rate_limit_messages, "window_ms": config.rate_limit_window_ms},
        "replay_window": config.replay_window,
        "max_event_bytes": config.max_event_bytes,
    }
    capabilities = ["history", "cancel", "resume"] + (["fixtures"] if config.fixtures else [])
    event: Event = {
        "type": "session",
        "protocol_version": PROTOCOL_VERSION,
        "session_id": session_id,
        "conversation_id": conversation_id,
        "user": {"id": user_id},
        "limits": limits,
        "capabilities": capabilities,
    }
    if not config.minimal_session:
        limits.update(session_ttl_ms=config.session_ttl_ms, max_connections=config.max_connections)
        event["server"] = dict(SERVER)
    if config.vendor_extensions:
        capabilities.append("x-minimal.echo")
        limits["x-minimal.max_tools_per_run"] = 1
    return event


def history(conversation_id: str, entries: list[Event]) -> Event:
    """The stored conversation, oldest first (ASP-SES-005, ASP-HIS-002, ASP-HIS-008)."""
    return {"type": "history", "conversation_id": conversation_id, "messages": entries}


def resumed(session_id: str, replay_from: int, replay_count: int) -> Event:
    """The answer to a successful resume (ASP-RES-001)."""
    return {
        "type": "resumed",
        "session_id": session_id,
        "replay_from": replay_from,
        "replay_count": replay_count,
    }


def run_started(run_id: str, message_id: str, conversation_id: str) -> Event:
    """A run begins (ASP-MSG-001, ASP-MSG-002)."""
    return {
        "type": "run_started",
        "run_id": run_id,
        "message_id": message_id,
        "conversation_id": conversation_id,
    }


def text_delta(run_id: str, delta: str) -> Event:
    """New assistant text of a run (ASP-RUN-006)."""
    return {"type": "text_delta", "run_id": run_id, "delta": delta}


def tool_call(run_id: str, tool_call_id: str, name: str, arguments: dict[str, Any]) -> Event:
    """The agent calls a tool with its complete arguments (ASP-TOOL-001)."""
    return {
        "type": "tool_call",
        "run_id": run_id,
        "tool_call_id": tool_call_id,
        "name": name,
        "arguments": arguments,
    }


def tool_result(run_id: str, tool_call_id: str, content: Any, is_error: bool) -> Event:
    """The one result of a tool call (ASP-TOOL-002..004)."""
    return {
        "type": "tool_result",
        "run_id": run_id,
        "tool_call_id": tool_call_id,
        "content": content,
        "is_error": is_error,
    }


def complete(run_id: str, finish_reason: str) -> Event:
    """The run ended (ASP-RUN-004, ASP-RUN-007)."""
    return {"type": "complete", "run_id": run_id, "finish_reason": finish_reason}


def error(
    code: str,
    message: str,
    *,
    run_id: str | None = None,
    message_id: str | None = None,
    retry_after_ms: int | None = None,
) -> Event:
    """An error event (ASP-ERR-001), `retryable` as the registry says.

    Errors answering a client message carry no `run_id` and that message's `id` when it had a
    valid one (ASP-ERR-012); errors of a run carry its `run_id` and `message_id` (ASP-ERR-013).
    """
    event: Event = {"type": "error", "code": code, "message": message, "retryable": retryable(code)}
    if retry_after_ms is not None:
        event["retry_after_ms"] = retry_after_ms
    if run_id is not None:
        event["run_id"] = run_id
    if message_id is not None:
        event["message_id"] = message_id
    return event


def pong(ping_id: str | None) -> Event:
    """The answer to a ping (ASP-MSG-003)."""
    return {"type": "pong"} if ping_id is None else {"type": "pong", "id": ping_id}


def vendor_usage(run_id: str, tokens: int) -> Event:
    """A vendor event sent after a run's complete, naming that run (ASP-EXT-001, ASP-EXT-004)."""
    return {"type": "x-minimal.usage", "run_id": run_id, "tokens": tokens}
