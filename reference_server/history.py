"""Stored exchanges shown to clients as ASP history entries (ASP-HIS-008, ASP-HIS-009).

Per exchange: the user entry (with the message_id of its run_started), then the run's output in
the order produced: each stretch of text between tool calls one assistant entry, each tool call
one tool entry with its result (is_error true when it never got one). Every entry carries the
exchange's run_id.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from reference_server.protocol.wire import json_safe
from reference_server.storage import Exchange

INTERRUPTED = "interrupted"


def user_prompts(messages: Iterable[ModelMessage]) -> list[str]:
    """The user's messages in order (what the deterministic model recalls)."""
    return [
        part.content
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, UserPromptPart) and isinstance(part.content, str)
    ]


def tool_failed(part: ToolReturnPart | RetryPromptPart) -> bool:
    if isinstance(part, RetryPromptPart):
        return True
    return getattr(part, "outcome", "success") not in ("success", None)


def tool_content(part: ToolReturnPart | RetryPromptPart) -> Any:
    """A tool's result as JSON data: its value, or a string for a failure (wire form, see wire.py)."""
    if isinstance(part, RetryPromptPart) or tool_failed(part):
        return str(part.content) if not isinstance(part.content, str) else part.content
    return json_safe(part.content)


def arguments_of(part: ToolCallPart) -> dict[str, Any]:
    try:
        arguments = part.args_as_dict()
    except ValueError:
        return {"raw": str(part.args)}
    return arguments if isinstance(arguments, dict) else {"value": json_safe(arguments)}


def entries(stored: Iterable[Exchange]) -> list[dict[str, Any]]:
    """History entries of the stored exchanges, in stored order."""
    shown: list[dict[str, Any]] = []
    for exchange in stored:
        shown.extend(exchange_entries(exchange))
    return shown


def exchange_entries(exchange: Exchange) -> list[dict[str, Any]]:
    run_id = exchange.run_id
    shown: list[dict[str, Any]] = []
    pending: dict[str, dict[str, Any]] = {}
    for message in exchange.messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    shown.append(
                        {
                            "role": "user",
                            "content": part.content,
                            "message_id": exchange.message_id,
                            "run_id": run_id,
                        }
                    )
                elif isinstance(part, ToolReturnPart | RetryPromptPart) and part.tool_call_id in pending:
                    entry = pending.pop(part.tool_call_id)
                    entry["content"] = tool_content(part)
                    entry["is_error"] = tool_failed(part)
        elif isinstance(message, ModelResponse):
            for response_part in message.parts:
                if isinstance(response_part, TextPart) and response_part.content:
                    if shown and shown[-1]["role"] == "assistant":
                        shown[-1]["content"] += response_part.content
                    else:
                        shown.append(
                            {"role": "assistant", "content": response_part.content, "run_id": run_id}
                        )
                elif isinstance(response_part, ToolCallPart):
                    entry = {
                        "role": "tool",
                        "run_id": run_id,
                        "tool_call_id": response_part.tool_call_id,
                        "name": response_part.tool_name,
                        "arguments": json_safe(arguments_of(response_part)),
                        "content": INTERRUPTED,
                        "is_error": True,
                    }
                    pending[response_part.tool_call_id] = entry
                    shown.append(entry)
    return shown
