"""Errors: no automatic retry of a message behind an error whose retryable is false (ASP-ERR-011)."""

from __future__ import annotations

from conformance.client.context import ANSWER_S, ScenarioContext
from conformance.client.scenarios import scenario
from conformance.client.server import Event
from spec.registry import close_code

WATCH_S = 1.5  # how long the kit watches each connection for a retry


def _same(message: Event, original: Event) -> bool:
    given = original.get("id")
    if isinstance(given, str) and given:
        return message.get("id") == given or message.get("content") == original.get("content")
    return message.get("content") == original.get("content")


@scenario(
    "errors.no_retry_when_not_retryable",
    "A message answered by an error with retryable false is not sent again, at once or after a reconnect",
    ["ASP-ERR-011"],
)
async def no_retry_when_not_retryable(ctx: ScenarioContext) -> None:
    peer = await ctx.first_connection()
    await ctx.greet(peer, capabilities=("history",))
    original = await ctx.user_message(peer, "do this exactly once")
    error: Event = {
        "type": "error",
        "code": "conversation_not_found",
        "message": "This conversation does not exist.",
        "retryable": False,
    }
    if isinstance(original.get("id"), str):
        error["message_id"] = original["id"]
    await peer.send(error)
    await ctx.settle(WATCH_S)
    again_here = [m for m in peer.sent_of("message") if m is not original and _same(m, original)]
    shown = ctx.client.records("error")
    ctx.note(f"errors the client showed its user: {shown}")
    await peer.close(close_code("service_restart"), "service_restart")
    again = await ctx.connection(ANSWER_S, f"reconnect after {close_code('service_restart')}")
    await ctx.greet(again, capabilities=("history",))
    await ctx.settle(WATCH_S)
    again_there = [m for m in again.sent_of("message") if _same(m, original)]
    retries = len(again_here) + len(again_there)
    ctx.check(
        retries == 0,
        "ASP-ERR-011",
        f"the message behind error conversation_not_found (retryable false) was sent again {retries}x: "
        f"{len(again_here)} on the same connection, {len(again_there)} after a reconnect"
        if retries
        else "the message behind error conversation_not_found (retryable false) was not sent again, "
        f"on the same connection ({WATCH_S:.1f} s) nor after a reconnect ({WATCH_S:.1f} s)",
    )
