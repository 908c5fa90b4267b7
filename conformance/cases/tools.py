"""Tools: calls with complete arguments, one result each, failures that do not end the run."""

from __future__ import annotations

from conformance.context import CaseContext
from conformance.registry import case


@case(
    "tools.call_and_result",
    "a tool call is answered by exactly one result before complete",
    ["ASP-TOOL-001", "ASP-TOOL-002", "ASP-TOOL-003", "ASP-TOOL-006", "ASP-TOOL-005", "ASP-CAP-004"],
    fixtures=True,
)
async def call_and_result(ctx: CaseContext) -> None:
    client, _ = await ctx.connect(conversation_id="new")
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


@case(
    "tools.failure", "a failing tool gives is_error true and the run goes on", ["ASP-TOOL-004"], fixtures=True
)
async def failure(ctx: CaseContext) -> None:
    client, _ = await ctx.connect(conversation_id="new")
    events = await ctx.run(client, "asp-fixture:tool_error")
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


@case(
    "tools.cancel_answers_open_calls",
    "cancelling during a tool still answers the call before complete",
    ["ASP-TOOL-002", "ASP-CAN-001"],
    capabilities=("cancel",),
    fixtures=True,
)
async def cancel_open_call(ctx: CaseContext) -> None:
    client, _ = await ctx.connect(conversation_id="new")
    await client.send({"type": "message", "content": "asp-fixture:slow_tool 5000"})
    call = await ctx.expect(client, "tool_call", "ASP-TOOL-001")
    await client.send({"type": "cancel"})
    complete = await ctx.expect(client, "complete", "ASP-CAN-001", timeout=5)
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
