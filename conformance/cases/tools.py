"""Tools: calls with complete arguments, one result each, failures that do not end the run; every
call is stored with its result (ASP-HIS-001)."""

from __future__ import annotations

import time
from typing import Any

from conformance.context import CaseContext, assistant_text, text_of
from conformance.registry import case
from conformance.wire import Event


def _stored_calls(history: Event) -> list[dict[str, Any]]:
    return [m for m in history.get("messages", []) if m.get("role") == "tool"]


async def _stored_exchange(
    ctx: CaseContext, conversation_id: str, call: Event, result: Event, events: list[Event]
) -> None:
    """The conversation holds the run's tool call with its result and the run's text."""
    history = await ctx.reopen_history(conversation_id, "ASP-HIS-001")
    stored = [c for c in _stored_calls(history) if c.get("tool_call_id") == call.get("tool_call_id")]
    ctx.check(
        len(stored) == 1,
        "ASP-HIS-001",
        f"the tool call {call.get('tool_call_id')!r} is stored {len(stored)} times, expected once",
    )
    if stored:
        entry = stored[0]
        ctx.check(
            (entry.get("name"), entry.get("arguments"), entry.get("content"), entry.get("is_error"))
            == (call.get("name"), call.get("arguments"), result.get("content"), result.get("is_error")),
            "ASP-HIS-001",
            f"stored tool entry {entry!r} differs from the streamed call and result",
        )
    ctx.check(
        assistant_text(history) == text_of(events),
        "ASP-HIS-001",
        f"stored text {assistant_text(history)!r}, streamed {text_of(events)!r}",
    )


@case(
    "tools.call_and_result",
    "a tool call is answered by exactly one result before complete, and both are stored",
    ["ASP-TOOL-001", "ASP-TOOL-002", "ASP-TOOL-003", "ASP-TOOL-006", "ASP-TOOL-005", "ASP-CAP-004"],
)
async def call_and_result(ctx: CaseContext) -> None:
    client, session = await ctx.connect(conversation_id="new")
    events = await ctx.run(client, "asp-fixture:tool")
    calls = [e for e in events if e.get("type") == "tool_call"]
    results = [e for e in events if e.get("type") == "tool_result"]
    ctx.require(len(calls) == 1, "ASP-TOOL-001", f"{len(calls)} tool_call events for the tool fixture")
    call = calls[0]
    ctx.check(
        (call.get("name"), call.get("arguments")) == ("add", {"a": 2, "b": 3}),
        "ASP-TOOL-001",
        f"tool_call {call.get('name')!r} {call.get('arguments')!r}",
    )
    answers = [r for r in results if r.get("tool_call_id") == call.get("tool_call_id")]
    ctx.check(len(answers) == 1, "ASP-TOOL-002", f"{len(answers)} tool_result events for the call")
    if answers:
        ctx.check(
            answers[0].get("content") == 5 and answers[0].get("is_error") is False,
            "ASP-CAP-004",
            f"tool_result {answers[0].get('content')!r}",
        )
        if ctx.declares("history"):
            await client.close()
            await _stored_exchange(ctx, session["conversation_id"], call, answers[0], events)


@case(
    "tools.failure",
    "a failing tool gives is_error true, the run goes on, and the failed call is stored",
    ["ASP-TOOL-004"],
)
async def failure(ctx: CaseContext) -> None:
    client, session = await ctx.connect(conversation_id="new")
    events = await ctx.run(client, "asp-fixture:tool_error")
    calls = [e for e in events if e.get("type") == "tool_call"]
    results = [e for e in events if e.get("type") == "tool_result"]
    ctx.check(
        len(results) == 1 and results[0].get("is_error") is True,
        "ASP-TOOL-004",
        f"tool results {[(r.get('is_error'), r.get('content')) for r in results]}",
    )
    ctx.check(
        events[-1].get("finish_reason") == "stop",
        "ASP-TOOL-004",
        f"the run ended {events[-1].get('finish_reason')!r} instead of going on",
    )
    if len(calls) == 1 and len(results) == 1 and ctx.declares("history"):
        await client.close()
        await _stored_exchange(ctx, session["conversation_id"], calls[0], results[0], events)


@case(
    "tools.cancel_answers_open_calls",
    "cancelling during a tool still answers the call before complete",
    ["ASP-TOOL-002", "ASP-CAN-001"],
    capabilities=("cancel",),
)
async def cancel_open_call(ctx: CaseContext) -> None:
    client, _ = await ctx.connect(conversation_id="new")
    await ctx.settle(client)
    sleep_ms = int(5000 * ctx.stretch)
    message_id = await ctx.send_message(client, f"asp-fixture:slow_tool {sleep_ms}")
    started = await ctx.started(client, message_id)
    call = await ctx.expect(client, "tool_call", "ASP-TOOL-001")
    sent = time.monotonic()
    await client.send({"type": "cancel"})
    complete = await ctx.completion(
        client, started["run_id"], "ASP-CAN-001", timeout=5, what="the cancelled run's complete"
    )
    await ctx.settle(client)
    if complete.get("finish_reason") != "cancelled":
        ctx.precondition(
            not ctx.completed_before(client, started["run_id"], sent),
            "the run completed before the cancel could reach the server",
        )
    ctx.check(
        complete.get("finish_reason") == "cancelled",
        "ASP-CAN-001",
        f"finish_reason {complete.get('finish_reason')!r}",
    )
    answered = [
        e
        for e in client.events
        if e.get("type") == "tool_result" and e.get("tool_call_id") == call.get("tool_call_id")
    ]
    ctx.check(len(answered) == 1, "ASP-TOOL-002", "the open call got exactly one tool_result before complete")
