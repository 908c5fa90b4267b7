"""Liveness: a client pings every heartbeat interval and gives up on a connection silent for two
(ASP-HB-004)."""

from __future__ import annotations

import time

from conformance.client.context import ScenarioContext
from conformance.client.scenarios import scenario
from conformance.client.timing import EARLY_MS

INTERVAL_MS = 400  # announced; small so that the scenario takes seconds
ANSWERED_INTERVALS = 6  # the kit answers pings this long before falling silent
# A client checks at its own ticks, so it notices two silent intervals within three.
DEAD_WITHIN_INTERVALS = 3


@scenario(
    "heartbeats.two_silent_intervals",
    "The client pings every heartbeat interval and treats a connection silent for two intervals as dead",
    ["ASP-HB-004"],
)
async def two_silent_intervals(ctx: ScenarioContext) -> None:
    peer = await ctx.first_connection()
    await ctx.greet(peer, heartbeat_ms=INTERVAL_MS)
    opened = time.monotonic()
    await ctx.settle(ANSWERED_INTERVALS * INTERVAL_MS / 1000)
    pings = [t for t, m in peer.messages if m.get("type") == "ping"]
    gaps = [(b - a) * 1000 for a, b in zip([opened, *pings], pings, strict=False)]
    longest = max(gaps, default=float("inf"))
    allowed = 1.5 * INTERVAL_MS + ctx.late_ms
    spacing = f"longest gap {longest:.0f} ms" if pings else "no ping at all"
    ctx.check(
        len(pings) >= ANSWERED_INTERVALS - 2 and longest <= allowed,
        "ASP-HB-004",
        f"{len(pings)} pings in {ANSWERED_INTERVALS * INTERVAL_MS} ms, heartbeat_interval_ms {INTERVAL_MS}; "
        f"{spacing} (allowed {allowed:.0f} ms apart: 1.5 intervals + tolerance)",
    )
    ctx.require(
        not peer.gone.is_set() and ctx.server.pending() == 0,
        "ASP-HB-004",
        "the client gave up on a connection whose pings were answered",
    )
    async with peer.exclusive:  # no event is in flight from here on
        peer.answer_pings = False
        silent_from = peer.last_sent_at or time.monotonic()
    budget_ms = DEAD_WITHIN_INTERVALS * INTERVAL_MS + ctx.late_ms
    again = await ctx.server.next_peer(silent_from + budget_ms / 1000 + ctx.t(2.0) - time.monotonic())
    ends = [t for t in (peer.client_closed_at, again.arrived if again else None) if t is not None]
    if not ends:
        ctx.check(
            False,
            "ASP-HB-004",
            f"the connection has been silent for {budget_ms / 1000 + 2:.1f} s and the client still holds it",
        )
        return
    dead_after = (min(ends) - silent_from) * 1000
    low = 2 * INTERVAL_MS - EARLY_MS
    ctx.check(
        low <= dead_after <= budget_ms,
        "ASP-HB-004",
        f"the client gave up on the silent connection {dead_after:.0f} ms after its last event "
        f"(allowed [{low:.0f}, {budget_ms:.0f}] ms: two intervals, noticed within three, "
        f"tolerance -{EARLY_MS:.0f}/+{ctx.late_ms:.0f})",
    )
    if again is not None:
        await ctx.greet(again, heartbeat_ms=INTERVAL_MS, capabilities=("history",))
        await ctx.settle(0.2)
