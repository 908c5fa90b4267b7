"""One connection per user: the newer closes the older with 4002, nobody else is touched."""

from __future__ import annotations

import asyncio

from conformance.context import CaseContext, assistant_text
from conformance.registry import case
from spec.fixtures import fixture_text


@case(
    "duplicates.newer_supersedes_older",
    "a second connection of a user closes the first with 4002",
    ["ASP-DUP-001", "ASP-DUP-002"],
)
async def newer_supersedes(ctx: CaseContext) -> None:
    first, _ = await ctx.connect(0)
    second, _ = await ctx.connect(0)
    code = await ctx.closed_with(first)
    ctx.check(code == 4002, "ASP-DUP-001", f"the older connection closed with {code}, expected 4002")
    await ctx.alive(second, "ASP-DUP-002")


@case(
    "duplicates.other_users_untouched",
    "connections of different users do not close each other",
    ["ASP-DUP-005"],
    needs=("two_users",),
)
async def other_users(ctx: CaseContext) -> None:
    first, _ = await ctx.connect(0)
    second, _ = await ctx.connect(1)
    await asyncio.sleep(ctx.t(0.3))
    await ctx.alive(first, "ASP-DUP-005", "first")
    await ctx.alive(second, "ASP-DUP-005", "second")


@case(
    "duplicates.superseded_run_is_stored",
    "the superseded connection's run finishes and is stored",
    ["ASP-DUP-003"],
    capabilities=("history",),
    fixtures=True,
)
async def superseded_run(ctx: CaseContext) -> None:
    first, session = await ctx.connect(0, conversation_id="new")
    await first.send({"type": "message", "content": "asp-fixture:slow 20 25"})
    await ctx.expect(first, "text_delta", "ASP-RUN-009")
    second, _ = await ctx.connect(0, conversation_id=session["conversation_id"])
    ctx.check(await ctx.closed_with(first) == 4002, "ASP-DUP-001", "the older connection closed with 4002")
    await second.close()
    await asyncio.sleep(ctx.t(1.0))
    history = await ctx.reopen_history(session["conversation_id"], "ASP-DUP-003", user=0)
    answers = assistant_text(history)
    ctx.check(answers == fixture_text(20), "ASP-DUP-003", f"stored answer {answers[:60]!r}")
