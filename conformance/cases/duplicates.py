"""One connection per user: the newer closes the older with 4002, nobody else is touched."""

from __future__ import annotations

import time

from conformance.context import ANSWER_S, CaseContext, assistant_text, how_closed
from conformance.credentials import Unavailable
from conformance.gating import applies
from conformance.registry import case
from conformance.wire import AspClient, Closed
from spec.fixtures import fixture_text
from spec.registry import close_code

SUPERSEDED = close_code("superseded")
TRY_AGAIN_LATER = close_code("try_again_later")


@case(
    "duplicates.newer_supersedes_older",
    f"a second connection of a user closes the first with {SUPERSEDED}",
    ["ASP-DUP-001", "ASP-DUP-002"],
    connections=2,
    supersedes=True,
)
async def newer_supersedes(ctx: CaseContext) -> None:
    first, _ = await ctx.connect(0)
    second = await ctx.open(0)
    seconds = ctx.scaled(ANSWER_S)
    try:
        await ctx.within(second.expect("session", seconds), seconds, "the newer connection's session")
        served = True
    except (TimeoutError, Closed) as problem:
        served = False
        if second.close_code == TRY_AGAIN_LATER:
            # Refused for capacity: a 1.1 server admits a superseding connection at its limit
            # (ASP-LIM-007); a 1.0 server may refuse it when others hold the other slots.
            if not applies("ASP-LIM-007", ctx.terms.protocol_version):
                raise Unavailable(
                    f"the server is at its connection limit ({TRY_AGAIN_LATER}): others hold its connections"
                ) from None
            ctx.check(
                False,
                "ASP-LIM-007",
                f"the newer connection of the user was refused ({how_closed(second)}): a superseding "
                "connection is admitted at the connection limit, in the slot of the one it supersedes",
            )
        else:
            ctx.check(
                False,
                "ASP-DUP-002",
                f"the newer connection was not served ({how_closed(second)}): {problem}",
            )
    _older_closed(ctx, first, await ctx.closed_with(first))
    if served:
        await ctx.alive(second, "ASP-DUP-002")


def _older_closed(ctx: CaseContext, older: AspClient, code: int | None) -> None:
    """ASP-DUP-001: the older connection closed with 4002; the finding says how it did close."""
    expected = "" if code == SUPERSEDED else f", expected {SUPERSEDED}"
    ctx.check(code == SUPERSEDED, "ASP-DUP-001", f"the older connection {how_closed(older)}{expected}")


@case(
    "duplicates.other_users_untouched",
    "connections of different users do not close each other",
    ["ASP-DUP-005"],
    connections=2,
)
async def other_users(ctx: CaseContext) -> None:
    first, _ = await ctx.connect(0)
    second, _ = await ctx.connect(1)
    await ctx.sleep(ctx.scaled(0.3))
    await ctx.alive(first, "ASP-DUP-005", "first")
    await ctx.alive(second, "ASP-DUP-005", "second")


@case(
    "duplicates.superseded_run_is_stored",
    "the superseded connection's run finishes and is stored",
    ["ASP-DUP-003"],
    connections=2,
    supersedes=True,
)
async def superseded_run(ctx: CaseContext) -> None:
    first, session = await ctx.connect(0, conversation_id="new")
    await ctx.settle(first)
    pace = int(50 * ctx.stretch)
    await ctx.send_message(first, f"asp-fixture:slow 20 {pace}")
    started = await ctx.underway(first)
    moment = time.monotonic()
    second, _ = await ctx.connect(0, conversation_id=session["conversation_id"])
    ctx.precondition(
        not ctx.completed_before(first, started["run_id"], moment),
        "the run completed before the newer connection reached the server",
    )
    _older_closed(ctx, first, await ctx.closed_with(first))
    await second.close()
    history = await ctx.stored_history(
        session["conversation_id"],
        "ASP-DUP-003",
        lambda h: assistant_text(h) == fixture_text(20),
        within=20 * pace / 1000,
    )
    answers = assistant_text(history)
    ctx.check(answers == fixture_text(20), "ASP-DUP-003", f"stored answer {answers[:60]!r}")
