"""pydantic-ai's stored messages, shown to clients as ASP history entries."""

from __future__ import annotations

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

INTERRUPTED = "interrupted"


def user_prompts(messages: list[ModelMessage]) -> list[str]:
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


def entries(messages: list[ModelMessage]) -> list[dict[str, Any]]:
    """History entries: user turns, assistant text, tool calls filled in with their results."""
    shown: list[dict[str, Any]] = []
    pending: dict[str, dict[str, Any]] = {}
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    shown.append({"role": "user", "content": part.content})
                elif isinstance(part, ToolReturnPart | RetryPromptPart) and part.tool_call_id in pending:
                    entry = pending.pop(part.tool_call_id)
                    entry["content"] = part.content if isinstance(part, ToolReturnPart) else str(part.content)
                    entry["is_error"] = tool_failed(part)
        elif isinstance(message, ModelResponse):
            for response_part in message.parts:
                if isinstance(response_part, TextPart) and response_part.content:
                    if shown and shown[-1]["role"] == "assistant":
                        shown[-1]["content"] += response_part.content
                    else:
                        shown.append({"role": "assistant", "content": response_part.content})
                elif isinstance(response_part, ToolCallPart):
                    entry = {
                        "role": "tool",
                        "tool_call_id": response_part.tool_call_id,
                        "name": response_part.tool_name,
                        "arguments": response_part.args_as_dict(),
                        "content": INTERRUPTED,
                        "is_error": True,
                    }
                    pending[response_part.tool_call_id] = entry
                    shown.append(entry)
    return shown
