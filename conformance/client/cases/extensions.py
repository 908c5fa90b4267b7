"""What a client must tolerate from servers it does not fully know: x- members and events
(ASP-EXT-002) and a higher minor version (ASP-VER-005)."""

from __future__ import annotations

from conformance.client.context import TEXT, TOKENS, ScenarioContext
from conformance.client.scenarios import scenario
from conformance.client.server import Peer

NOT_TEXT = "NOT PART OF ANY ANSWER "  # in x- events only: a client that shows it treats them as text


async def _kept(ctx: ScenarioContext, peer: Peer, requirement: str, why: str) -> None:
    kept = not peer.gone.is_set() and ctx.server.pending() == 0
    ctx.require(
        kept,
        requirement,
        f"the client kept its connection through {why}"
        if kept
        else f"the client dropped its connection ({why})",
    )


@scenario(
    "extensions.x_members_and_events",
    "x- members on events and x- events (also carrying a completed run's id) change nothing the client shows",
    ["ASP-EXT-002"],
)
async def x_members_and_events(ctx: ScenarioContext) -> None:
    peer = await ctx.first_connection()
    await ctx.greet(peer, extra={"x-vendor": {"region": "eu-west", "tier": "gold"}})
    await peer.send({"type": "x-notice", "text": "maintenance at noon", "delta": NOT_TEXT})
    message = await ctx.user_message(peer, "hello with extensions", "ASP-EXT-002")
    run = ctx.run_for(peer, message)
    await peer.send({**run.started(), "x-trace": {"span": "abc123"}})
    for number, token in enumerate(TOKENS):
        await peer.send({**run.delta(token), "x-confidence": 0.9})
        if number == 3:
            await peer.send({"type": "x-progress", "run_id": run.run_id, "delta": NOT_TEXT, "percent": 50})
    await peer.send({**run.complete(), "x-cost": {"usd": 0.0001}})
    # Vendor events are outside the run lifecycle: one may carry a completed run's id (ASP-EXT-004).
    await peer.send({"type": "x-feedback", "run_id": run.run_id, "delta": NOT_TEXT})
    report = await ctx.reported_run(run.run_id)
    await _kept(ctx, peer, "ASP-EXT-002", "x- members and events")
    shown = report.get("text") if report else None
    ctx.check(
        shown == TEXT,
        "ASP-EXT-002",
        f"the run with x- members and x- events shows {shown!r}; without them {TEXT!r}",
    )
    following = await ctx.user_message(peer, "and after them", "ASP-EXT-002")
    after = ctx.run_for(peer, following)
    await ctx.play(peer, after)
    report = await ctx.reported_run(after.run_id)
    shown = report.get("text") if report else None
    ctx.check(shown == TEXT, "ASP-EXT-002", f"the next run shows {shown!r}; undisturbed {TEXT!r}")
    errors = ctx.client.records("error")
    ctx.check(
        not errors,
        "ASP-EXT-002",
        f"the client showed errors for x- members or events: {errors}" if errors else "no error shown",
    )


@scenario(
    "versioning.higher_minor",
    "A session of protocol_version 1.9, with a capability and members 1.1 does not define, works as usual",
    ["ASP-VER-005"],
)
async def higher_minor(ctx: ScenarioContext) -> None:
    peer = await ctx.first_connection()
    await ctx.greet(
        peer,
        version="1.9",
        capabilities=("history", "resume", "cancel", "summaries"),
        extra={"region": "eu-west"},
    )
    message = await ctx.user_message(peer, "hello from 1.9", "ASP-VER-005")
    run = ctx.run_for(peer, message)
    await peer.send({**run.started(), "model": "asp-1.9"})
    for token in TOKENS:
        await peer.send(run.delta(token))
    await peer.send({**run.complete(), "summary": "counted to eight"})
    report = await ctx.reported_run(run.run_id)
    await _kept(ctx, peer, "ASP-VER-005", "a 1.9 session")
    shown = report.get("text") if report else None
    ctx.check(shown == TEXT, "ASP-VER-005", f"the run of a 1.9 session shows {shown!r}; undisturbed {TEXT!r}")
    errors = ctx.client.records("error")
    ctx.check(
        not errors, "ASP-VER-005", f"the client showed errors: {errors}" if errors else "no error shown"
    )
