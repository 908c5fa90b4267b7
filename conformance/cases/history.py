"""History: the agent remembers across reconnects; disconnects lose nothing; owners only; the
layout of entries."""

from __future__ import annotations

import time

from conformance.context import CaseContext, assistant_text, text_of, turns
from conformance.credentials import Unavailable
from conformance.registry import case
from conformance.wire import Event
from spec.fixtures import fixture_text


@case(
    "history.agent_sees_earlier_turns",
    "after a reconnect the agent's answer takes earlier turns into account",
    ["ASP-HIS-003", "ASP-HIS-002", "ASP-CAP-004"],
)
async def agent_sees_earlier_turns(ctx: CaseContext) -> None:
    client, session = await ctx.connect(conversation_id="new")
    for content in ("first turn", "second turn"):
        await ctx.run(client, content)
    await client.close()
    again, _ = await ctx.connect(conversation_id=session["conversation_id"])  # kept: the case goes on on it
    history = await ctx.expect(again, "history", "ASP-HIS-002")
    users = turns(history, "user")
    ctx.check(users == ["first turn", "second turn"], "ASP-HIS-002", f"user turns {users}")
    events = await ctx.run(again, "asp-fixture:recall")
    ctx.check(
        text_of(events) == "recall:first turn|second turn",
        "ASP-HIS-003",
        f"recall answered {text_of(events)!r}",
    )


@case(
    "history.disconnect_mid_run_loses_nothing",
    "a client that drops mid-run finds the whole answer stored",
    ["ASP-HIS-004"],
)
async def disconnect_mid_run(ctx: CaseContext) -> None:
    client, session = await ctx.connect(conversation_id="new")
    await ctx.settle(client)
    pace = int(40 * ctx.stretch)
    await ctx.send_message(client, f"asp-fixture:slow 30 {pace}")
    started = await ctx.underway(client)
    moment = time.monotonic()
    client.abort()
    ctx.precondition(
        not ctx.completed_before(client, started["run_id"], moment),
        "the run completed before the client dropped",
    )
    history = await ctx.stored_history(
        session["conversation_id"],
        "ASP-HIS-004",
        lambda h: assistant_text(h) == fixture_text(30),
        within=30 * pace / 1000,
    )
    answers = assistant_text(history)
    ctx.check(answers == fixture_text(30), "ASP-HIS-004", f"stored answer {answers[:60]!r}")


@case(
    "history.no_writing_into_foreign_conversations",
    "a message naming another user's conversation is refused",
    ["ASP-HIS-006", "ASP-MSG-004"],
)
async def no_foreign_writes(ctx: CaseContext) -> None:
    owner, session = await ctx.connect(0, conversation_id="new")
    await ctx.run(owner, "owner's own words")
    await owner.close()
    intruder, _ = await ctx.connect(1, conversation_id="new")
    await ctx.send_message(
        intruder, "written by an intruder", message_id="kit-w1", conversation_id=session["conversation_id"]
    )
    answer = await ctx.expect(
        intruder,
        lambda e: e.get("type") in ("error", "run_started"),
        "ASP-MSG-004",
        what="an answer to the foreign message",
    )
    ctx.check(
        answer.get("code") == "conversation_not_found",
        "ASP-MSG-004",
        f"got {answer.get('type')} {answer.get('code', '')}",
    )
    await intruder.close()
    history = await ctx.reopen_history(session["conversation_id"], "ASP-HIS-006", user=0)
    ctx.check(
        "written by an intruder" not in str(history), "ASP-HIS-006", "the intruder's message was stored"
    )


def _stored_as(content: str, events: list[Event], cancelled: bool = False) -> list[Event]:
    """The history entries an exchange is stored as (ASP-HIS-008, ASP-HIS-009), derived from the run's
    events as streamed: the user entry, then each stretch of text between tool calls one assistant
    entry and each tool call one tool entry with its result; a call left open by a cancel is stored
    with is_error true."""
    started = events[0]
    run_id = started.get("run_id")
    entries: list[Event] = [
        {"role": "user", "content": content, "message_id": started.get("message_id"), "run_id": run_id}
    ]
    calls: dict[str, Event] = {}
    text = ""
    for event in events[1:]:
        kind = event.get("type")
        if kind == "text_delta":
            text += str(event.get("delta", ""))
        elif kind == "tool_call":
            if text:
                entries.append({"role": "assistant", "content": text, "run_id": run_id})
                text = ""
            entry: Event = {
                "role": "tool",
                "run_id": run_id,
                "tool_call_id": event.get("tool_call_id"),
                "name": event.get("name"),
            }
            calls[str(event.get("tool_call_id"))] = entry
            entries.append(entry)
        elif kind == "tool_result" and str(event.get("tool_call_id")) in calls:
            calls[str(event.get("tool_call_id"))].update(
                content=event.get("content"), is_error=event.get("is_error")
            )
    if text:
        entries.append({"role": "assistant", "content": text, "run_id": run_id})
    for entry in calls.values():
        if cancelled or "is_error" not in entry:
            entry["is_error"] = True
            entry.pop("content", None)  # whatever the server says of a call cut short
    return entries


SHAPE_KEYS = ("role", "name", "tool_call_id", "content", "is_error")


def _shape(entry: Event, like: Event | None = None) -> str:
    """An entry's layout members, as text; with `like`, only the members `like` has."""
    keys = [k for k in SHAPE_KEYS if like is None or k in like]
    return repr({k: entry[k] for k in keys if k in entry and entry[k] is not None})


@case(
    "history.layout",
    "history lists each exchange as stored: the user entry, then text stretches and tool calls in the "
    "order produced, each entry naming its run",
    ["ASP-HIS-008", "ASP-HIS-009"],
)
async def layout(ctx: CaseContext) -> None:
    client, session = await ctx.connect(conversation_id="new")
    expected: list[Event] = []
    for content in (
        "asp-fixture:text 3",
        "asp-fixture:tool",
        "asp-fixture:text 0",
        "asp-fixture:model_error",
    ):
        expected += _stored_as(content, await ctx.run(client, content))
    if ctx.declares("cancel"):
        # A run cancelled during its tool call: stored as far as it went, the open call is_error true.
        content = f"asp-fixture:slow_tool {int(5000 * ctx.stretch)}"
        message_id = await ctx.send_message(client, content)
        started = await ctx.started(client, message_id)
        await ctx.expect(client, "tool_call", "ASP-TOOL-001")
        await client.send({"type": "cancel"})
        complete = await ctx.completion(client, started["run_id"], "ASP-CAN-001", timeout=5)
        await ctx.settle(client)
        ctx.precondition(
            complete.get("finish_reason") == "cancelled",
            "the slow tool finished before the cancel reached the server",
        )
        ended = client.events.index(complete)  # vendor events may name the run after its complete
        run = [e for e in client.events[: ended + 1] if e.get("run_id") == started["run_id"]]
        expected += _stored_as(content, run, cancelled=True)
    await client.close()
    history = await ctx.reopen_history(session["conversation_id"], "ASP-HIS-008")
    stored = [m for m in history.get("messages", []) if isinstance(m, dict)]
    if history.get("truncated"):
        raise Unavailable("the history was truncated to fit max_event_bytes (ASP-LIM-011)")
    ctx.check(
        len(stored) == len(expected)
        and all(_shape(e, like=w) == _shape(w) for e, w in zip(stored, expected, strict=True)),
        "ASP-HIS-008",
        f"history entries {[_shape(e) for e in stored]}; the runs as streamed are stored as "
        f"{[_shape(e) for e in expected]}",
    )
    for number, (entry, wanted) in enumerate(zip(stored, expected, strict=False)):
        ctx.check(
            entry.get("run_id") == wanted["run_id"],
            "ASP-HIS-009",
            f"history entry {number} ({entry.get('role')}) carries run_id {entry.get('run_id')!r}, its "
            f"exchange's run is {wanted['run_id']!r}",
        )
        if wanted["role"] == "user":
            ctx.check(
                entry.get("message_id") == wanted["message_id"],
                "ASP-HIS-009",
                f"user entry {number} carries message_id {entry.get('message_id')!r}, its run_started "
                f"carried {wanted['message_id']!r}",
            )
