"""History: the agent remembers across reconnects; disconnects lose nothing; owners only."""

from __future__ import annotations

import time

from conformance.context import CaseContext, assistant_text, text_of, turns
from conformance.registry import case
from spec.fixtures import fixture_text


@case(
    "history.agent_sees_earlier_turns",
    "after a reconnect the agent's answer takes earlier turns into account",
    ["ASP-HIS-003", "ASP-HIS-002", "ASP-CAP-004"],
    capabilities=("history",),
    fixtures=True,
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
    capabilities=("history",),
    fixtures=True,
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
    capabilities=("history",),
    needs=("two_users",),
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
