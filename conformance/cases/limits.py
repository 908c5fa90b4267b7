"""Connection limit, frame size and rate limit."""

from __future__ import annotations

import asyncio
import json

from conformance.context import CaseContext
from conformance.registry import case
from conformance.wire import AspClient, Closed


@case(
    "limits.connection_limit",
    "exactly max_connections of max+3 concurrent connects are admitted; the rest 1013",
    ["ASP-LIM-001", "ASP-LIM-002"],
    needs=("max_connections", "many_users"),
    timeout_s=90,
    order=5,
)
async def connection_limit(ctx: CaseContext) -> None:
    limit = int(ctx.limits.get("max_connections") or ctx.options.max_connections or 0)
    extra = 3

    async def attempt(user: int) -> tuple[str, AspClient | None]:
        try:
            client = await ctx.open(user)
        except Exception as exc:  # a refused handshake is already a finding
            return f"refused: {exc}", None
        try:
            event = await client.recv(ctx.t(10))
        except Closed:
            return f"closed:{client.close_code}", client
        except TimeoutError:
            return "silent", client
        return str(event.get("type")), client

    for round_number in range(2):
        offset = round_number * (limit + extra)
        outcomes = await asyncio.gather(*[attempt(offset + i) for i in range(limit + extra)])
        kinds = [kind for kind, _ in outcomes]
        admitted = kinds.count("session")
        ctx.check(
            admitted == limit, "ASP-LIM-002", f"round {round_number + 1}: {admitted} admitted, limit {limit}"
        )
        ctx.check(
            kinds.count("closed:1013") == extra,
            "ASP-LIM-001",
            f"round {round_number + 1}: outcomes beyond the limit {sorted(set(kinds) - {'session'})}",
        )
        for kind, client in outcomes:
            if kind == "closed:1013" and client is not None:
                ctx.check(client.events == [], "ASP-LIM-001", "an event was sent before the 1013 close")
        await asyncio.gather(*[c.close() for _, c in outcomes if c is not None])
        await asyncio.sleep(ctx.t(0.5))


def _ping_of(size: int) -> str:
    empty = json.dumps({"type": "ping", "id": "sized", "x-pad": ""})
    return json.dumps({"type": "ping", "id": "sized", "x-pad": "a" * (size - len(empty))})


@case(
    "limits.frame_size",
    "a frame of max_message_bytes is accepted; one byte more closes 1009",
    ["ASP-LIM-003"],
)
async def frame_size(ctx: CaseContext) -> None:
    limit = int(ctx.limits.get("max_message_bytes", 0))
    ctx.require(limit >= 64, "ASP-SES-002", "the session announces max_message_bytes")
    client, _ = await ctx.connect()
    await client.send(_ping_of(limit))
    pong = await ctx.expect(
        client, "pong", "ASP-LIM-003", what="pong to a frame of exactly max_message_bytes"
    )
    ctx.check(pong.get("id") == "sized", "ASP-LIM-003", "a frame of exactly the limit was served")
    await client.send(_ping_of(limit + 1))
    code = await ctx.closed_with(client)
    ctx.check(
        code == 1009, "ASP-LIM-003", f"a frame one byte over the limit closed with {code}, expected 1009"
    )


@case(
    "limits.rate_limit",
    "a message over the rate limit gets rate_limited with retry_after_ms",
    ["ASP-LIM-004"],
    fixtures=True,
    timeout_s=120,
    order=5,
)
async def rate_limit(ctx: CaseContext) -> None:
    rate = ctx.limits.get("rate_limit", {})
    allowed = int(rate.get("messages", 0))
    ctx.require(
        0 < allowed <= 200, "ASP-SES-002", f"rate_limit.messages {allowed} (this case sends that many)"
    )
    client, _ = await ctx.connect(conversation_id="new")
    for number in range(allowed):
        await ctx.run(client, "asp-fixture:text 1", message_id=f"kit-rate-{number}")
    await client.send({"type": "message", "id": "kit-rate-over", "content": "asp-fixture:text 1"})
    answer = await ctx.expect(
        client,
        lambda e: e.get("type") in ("error", "run_started"),
        "ASP-LIM-004",
        what="an answer to the message over the limit",
    )
    ctx.check(
        answer.get("type") == "error" and answer.get("code") == "rate_limited",
        "ASP-LIM-004",
        f"message {allowed + 1} within the window got {answer.get('type')} {answer.get('code', '')}",
    )
    if answer.get("type") == "error":
        retry = answer.get("retry_after_ms")
        ctx.check(
            isinstance(retry, int) and 0 < retry <= int(rate.get("window_ms", 0)),
            "ASP-LIM-004",
            f"retry_after_ms {retry!r}",
        )
        await ctx.alive(client, "ASP-LIM-004")
