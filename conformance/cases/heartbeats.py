"""Idle timeout and pings, waiting the times the server announces (bounded by --max-wait).

These cases wait on real time, so the runner runs them beside the others: a check of a server on
spec defaults takes about its idle timeout plus the rest, not their sum.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

from conformance.context import CaseContext, how_closed
from conformance.credentials import Unavailable
from conformance.registry import case
from conformance.wire import AspClient, Closed, closure
from spec.registry import close_code

IDLE_TIMEOUT = close_code("idle_timeout")


def _idle_seconds(ctx: CaseContext) -> float:
    idle = ctx.terms.idle_timeout_s
    if idle is None:
        raise Unavailable("the session announces no idle_timeout_ms")
    return idle


def _grace(ctx: CaseContext, idle: float) -> float:
    """How late past the idle timeout a server's timer may fire (its tick, the trip here)."""
    return ctx.scaled(max(1.0, 0.1 * idle))


@case(
    "heartbeats.idle_timeout",
    f"a quiet connection is closed with {IDLE_TIMEOUT} after idle_timeout_ms",
    ["ASP-HB-002"],
    realtime=True,
)
async def idle_timeout(ctx: CaseContext) -> None:
    client, code, waited, idle = await _quiet_until_closed(ctx)
    ctx.check(
        code == IDLE_TIMEOUT,
        "ASP-HB-002",
        f"{how_closed(client)} after {waited:.1f}s (idle timeout {idle:.1f}s)",
    )


async def _quiet_until_closed(
    ctx: CaseContext, beside: Callable[[AspClient, float], Coroutine[Any, Any, None]] | None = None
) -> tuple[AspClient, int | None, float, float]:
    """Open a connection that sends no data frame (`beside`, given the connection and the idle
    timeout, runs alongside), wait out the idle timeout plus grace, and check it was not closed
    for idleness early (ASP-HB-002). Returns the connection (for `how_closed`), its close code
    (None: still open), the seconds waited and the idle timeout in seconds."""
    idle = _idle_seconds(ctx)
    wait = ctx.real_time(idle + _grace(ctx, idle), "waiting out the announced idle timeout")
    # Before the connect: a server may start its idle clock when it accepts, and a busy machine
    # can put that well before the kit reads `session`; only this instant cannot be after it.
    opened = time.monotonic()
    client, _ = await ctx.connect(keepalive=False)
    alongside = asyncio.create_task(beside(client, idle)) if beside is not None else None
    try:
        code = await ctx.closed_with(client, wait, scaled=False)
    finally:
        if alongside is not None:
            alongside.cancel()
    waited = time.monotonic() - opened
    ctx.check(
        code != IDLE_TIMEOUT or waited >= idle * 0.9,
        "ASP-HB-002",
        f"closed after {waited:.1f}s, before the timeout",
    )
    return client, code, waited, idle


@case(
    "heartbeats.pings_keep_alive",
    "pings restart the idle timer",
    ["ASP-HB-003"],
    realtime=True,
)
async def pings_keep_alive(ctx: CaseContext) -> None:
    idle = _idle_seconds(ctx)
    span = ctx.real_time(idle + _grace(ctx, idle), "pinging past the announced idle timeout")
    interval = min(ctx.terms.keepalive_s, idle / 3)
    client, _ = await ctx.connect(keepalive=False)
    deadline = time.monotonic() + span
    number = 0
    while time.monotonic() < deadline:
        # Paced from the last ping sent, not from its pong: a slow pong must not stretch the gap.
        due = min(client.last_sent + interval, deadline)
        await ctx.sleep(max(0.0, due - time.monotonic()), "the next keepalive ping")
        number += 1
        await ctx.alive(client, "ASP-HB-003", f"keepalive-{number}")
    ctx.check(client.close_code is None, "ASP-HB-003", f"{how_closed(client)} despite pings")


@case(
    "heartbeats.control_frames_do_not_count",
    f"WebSocket Pings from the client do not keep a quiet connection open: closed {IDLE_TIMEOUT} on time",
    ["ASP-HB-005"],
    realtime=True,
)
async def control_frames_do_not_count(ctx: CaseContext) -> None:
    async def ping_control_frames(client: AspClient, idle: float) -> None:
        while client.close_code is None:
            await asyncio.sleep(idle / 4)
            try:
                await client.websocket.ping()
            except Exception:  # the connection is gone; the close is what the case judges
                return
            client.transcript.add("send", text="<WebSocket Ping control frame>")

    client, code, waited, idle = await _quiet_until_closed(ctx, ping_control_frames)
    ctx.check(
        code == IDLE_TIMEOUT,
        "ASP-HB-005",
        f"pinged with WebSocket Ping frames every {idle / 4:.2f}s and sent no data frame: "
        f"{how_closed(client)} after {waited:.1f}s, expected {IDLE_TIMEOUT} after the idle timeout of "
        f"{idle:.1f}s",
    )


@case(
    "heartbeats.no_idle_close_during_run",
    "a run longer than the idle timeout is not cut by it, though the client sends nothing",
    ["ASP-HB-002"],
    fixtures=True,
    realtime=True,
)
async def no_idle_close_during_run(ctx: CaseContext) -> None:
    idle = _idle_seconds(ctx)
    span = ctx.real_time(idle + _grace(ctx, idle), "a run outlasting the announced idle timeout")
    pace_ms = max(20, min(500, int(idle * 100)))
    tokens = min(100_000, math.ceil(span * 1000 / pace_ms) + 1)
    client, _ = await ctx.connect(conversation_id="new", keepalive=False)
    message_id = await ctx.send_message(client, f"asp-fixture:slow {tokens} {pace_ms}")
    started = await ctx.started(client, message_id)
    began = time.monotonic()
    lasts = (tokens - 1) * pace_ms / 1000
    ctx.allow(lasts + ctx.scaled(10), f"complete of run {started['run_id']}")
    try:
        await client.expect(
            lambda e: e.get("type") == "complete" and e.get("run_id") == started["run_id"],
            lasts + ctx.scaled(10),
        )
    except Closed as closed:
        ctx.kept_up(closed, f"complete of run {started['run_id']}")
        ran = time.monotonic() - began
        ctx.check(
            closed.code != IDLE_TIMEOUT,
            "ASP-HB-002",
            f"closed with {IDLE_TIMEOUT} (idle timeout) {ran:.1f}s into a run of {lasts:.1f}s: "
            "idleness counts only while no run is active",
        )
        ctx.fail(
            "ASP-RUN-004", f"the connection {closure(closed.code, closed.reason)} before the run completed"
        )
    except TimeoutError:
        ctx.fail(
            "ASP-RUN-004", f"no complete of run {started['run_id']} within {lasts + ctx.scaled(10):.1f}s"
        )
    ctx.check(True, "ASP-HB-002", f"a run of {lasts:.1f}s outlasted the idle timeout of {idle:.1f}s")


@case(
    "heartbeats.idle_counts_from_run_end",
    "after a run the connection gets a full idle timeout from its complete, not from the last frame",
    ["ASP-HB-006", "ASP-HB-002"],
    realtime=True,
)
async def idle_counts_from_run_end(ctx: CaseContext) -> None:
    idle = _idle_seconds(ctx)
    # A run of a quarter of the idle timeout, begun by the last data frame the client sends: a timer
    # counting from that frame closes a quarter early, one counting from the complete on time.
    pace_ms = max(20, int(idle * 1000 / 40))
    tokens = max(2, math.ceil(idle * 250 / pace_ms) + 1)
    lasts = (tokens - 1) * pace_ms / 1000
    ctx.real_time(lasts, "a run of a quarter of the announced idle timeout")
    wait = ctx.real_time(idle + _grace(ctx, idle), "a full idle timeout after the run")
    client, _ = await ctx.connect(conversation_id="new", keepalive=False)
    message_id = await ctx.send_message(client, f"asp-fixture:slow {tokens} {pace_ms}")
    sent = client.last_sent
    started = await ctx.started(client, message_id)
    complete = await ctx.completion(client, started["run_id"], lasts=lasts)
    # The server's complete left no earlier than `lasts` after the message was sent (the fixture
    # paces the run) and no later than it arrived here, which a busy machine can make late. The
    # quiet period is counted from the earlier of the two, so a slow delivery of the complete
    # cannot make a timer that counts from it look early.
    ended = min(client.arrival(complete) or time.monotonic(), sent + lasts)
    quiet_since = max(ended, client.last_sent)
    code = await ctx.closed_with(client, wait, scaled=False)
    quiet = time.monotonic() - quiet_since
    ctx.check(
        code == IDLE_TIMEOUT,
        "ASP-HB-002",
        f"quiet after a run: {how_closed(client)} {quiet:.1f}s after its complete (idle timeout {idle:.1f}s)",
    )
    ctx.check(
        code != IDLE_TIMEOUT or quiet >= idle * 0.85,  # the fault closes at 0.75; the rest is the trip
        "ASP-HB-006",
        f"after a run of {lasts:.2f}s begun by the client's last data frame, the connection closed "
        f"{quiet:.2f}s after the complete; the idle timeout ({idle:.1f}s) counts from the complete",
    )
