"""Idle timeout and pings, waiting the times the server announces."""

from __future__ import annotations

import asyncio
import time

from conformance.context import CaseContext
from conformance.credentials import Unavailable
from conformance.registry import case


def _idle_seconds(ctx: CaseContext) -> float:
    idle = ctx.limits.get("idle_timeout_ms")
    if not isinstance(idle, int):
        raise Unavailable("the session announces no idle_timeout_ms")
    seconds = idle / 1000
    if seconds > ctx.options.max_wait_s:
        raise Unavailable(
            f"the announced idle timeout ({seconds:.0f}s) exceeds --max-wait ({ctx.options.max_wait_s:.0f}s)"
        )
    return seconds


@case(
    "heartbeats.idle_timeout",
    "a quiet connection is closed with 4003 after idle_timeout_ms",
    ["ASP-HB-002"],
    timeout_s=90,
)
async def idle_timeout(ctx: CaseContext) -> None:
    idle = _idle_seconds(ctx)
    client, _ = await ctx.connect()
    opened = time.monotonic()
    code = await ctx.closed_with(client, timeout=idle * 1.5 + 2)
    waited = time.monotonic() - opened
    ctx.check(
        code == 4003, "ASP-HB-002", f"closed with {code} after {waited:.1f}s (idle timeout {idle:.1f}s)"
    )
    ctx.check(
        code != 4003 or waited >= idle * 0.9, "ASP-HB-002", f"closed after {waited:.1f}s, before the timeout"
    )


@case("heartbeats.pings_keep_alive", "pings restart the idle timer", ["ASP-HB-003"], timeout_s=90)
async def pings_keep_alive(ctx: CaseContext) -> None:
    idle = _idle_seconds(ctx)
    client, _ = await ctx.connect()
    deadline = time.monotonic() + idle * 1.6
    number = 0
    while time.monotonic() < deadline:
        await asyncio.sleep(idle / 4)
        number += 1
        await ctx.alive(client, "ASP-HB-003", f"keepalive-{number}")
    ctx.check(client.close_code is None, "ASP-HB-003", f"closed with {client.close_code} despite pings")
