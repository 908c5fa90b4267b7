"""Resume: replay with original seq, live events after; refusals by resume_failed."""

from __future__ import annotations

import asyncio

from conformance.context import CaseContext, text_of
from conformance.registry import case
from spec.fixtures import fixture_text


@case(
    "resume.replays_then_continues",
    "resume replays missed events with their seq, then the live run",
    ["ASP-RES-001", "ASP-RES-003", "ASP-RES-004", "ASP-ENV-002"],
    capabilities=("resume",),
    fixtures=True,
)
async def replays_then_continues(ctx: CaseContext) -> None:
    first, session = await ctx.connect(conversation_id="new")
    await first.send({"type": "message", "content": "asp-fixture:slow 40 25"})
    await ctx.expect(first, "run_started", "ASP-MSG-001")
    for _ in range(5):
        await ctx.expect(first, "text_delta", "ASP-RUN-009")
    last_seq = first.events[-1]["seq"]
    seen = text_of(first.events)
    first.abort()
    await asyncio.sleep(ctx.t(0.2))
    second, _ = await ctx.connect(conversation_id=session["conversation_id"])
    await second.send({"type": "resume", "session_id": session["session_id"], "last_seq": last_seq})
    resumed = await ctx.expect(second, "resumed", "ASP-RES-001")
    ctx.check(
        resumed.get("replay_from") == last_seq + 1,
        "ASP-RES-001",
        f"replay_from {resumed.get('replay_from')}, expected {last_seq + 1}",
    )
    complete = await ctx.expect(second, "complete", "ASP-RES-004", timeout=10)
    after = [
        e
        for e in second.events
        if isinstance(e.get("seq"), int) and e["seq"] > last_seq and e.get("run_id") == complete.get("run_id")
    ]
    ctx.check(
        bool(after) and after[0]["seq"] == last_seq + 1,
        "ASP-RES-001",
        "the replay starts right after last_seq",
    )
    ctx.check(
        seen + text_of(after) == fixture_text(40),
        "ASP-RES-004",
        "the text before the drop and after the resume make the whole answer",
    )


@case(
    "resume.refused_for_unknown_sessions",
    "an unknown session cannot be resumed; the connection goes on",
    ["ASP-RES-002"],
    capabilities=("resume",),
)
async def unknown_session(ctx: CaseContext) -> None:
    client, _ = await ctx.connect()
    await client.send(
        {"type": "resume", "id": "kit-r1", "session_id": "ses_no_such_session_at_all", "last_seq": 3}
    )
    error = await ctx.expect(client, "error", "ASP-RES-002")
    ctx.check(error.get("code") == "resume_failed", "ASP-RES-002", f"code {error.get('code')!r}")
    await ctx.alive(client, "ASP-RES-002")


@case(
    "resume.refused_for_other_users",
    "another user's session cannot be resumed",
    ["ASP-RES-002", "ASP-HIS-005", "ASP-SEC-003"],
    capabilities=("resume",),
    needs=("two_users",),
)
async def other_users_session(ctx: CaseContext) -> None:
    _, session = await ctx.connect(0)
    intruder, _ = await ctx.connect(1)
    await intruder.send({"type": "resume", "session_id": session["session_id"], "last_seq": 0})
    answer = await ctx.expect(
        intruder,
        lambda e: e.get("type") in ("error", "resumed"),
        "ASP-RES-002",
        what="an answer to the foreign resume",
    )
    ctx.check(
        answer.get("code") == "resume_failed",
        "ASP-HIS-005",
        f"resuming another user's session got {answer.get('type')} {answer.get('code', '')}",
    )


@case(
    "resume.refused_after_a_message",
    "resume after a message is refused",
    ["ASP-RES-002"],
    capabilities=("resume",),
    fixtures=True,
)
async def after_message(ctx: CaseContext) -> None:
    other, other_session = await ctx.connect(0, conversation_id="new")
    await other.close()
    client, _ = await ctx.connect(0, conversation_id="new")
    await ctx.run(client, "asp-fixture:text 1")
    await client.send({"type": "resume", "session_id": other_session["session_id"], "last_seq": 1})
    error = await ctx.expect(client, "error", "ASP-RES-002")
    ctx.check(error.get("code") == "resume_failed", "ASP-RES-002", f"code {error.get('code')!r}")
