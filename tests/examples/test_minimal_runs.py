"""The minimal server's runs, errors and stored conversations, over real sockets.

History layout and ids (ASP-HIS-008/009), error ids (ASP-ERR-012/013), conversation binding
(ASP-SES-007..010), the per-user sliding rate limit (ASP-LIM-009), fixture pacing (ASP-CAP-004),
max_event_bytes (ASP-LIM-011) and history surviving a restart (ASP-HIS-007).
"""

from __future__ import annotations

import asyncio
import time

from conformance.wire import AspClient
from tests.examples.conftest import Event, MinimalServer, Opener, Starter, opened


async def run(client: AspClient, content: str, message_id: str | None = None) -> list[Event]:
    message: Event = {"type": "message", "content": content}
    if message_id:
        message["id"] = message_id
    await client.send(message)
    return await client.collect_run(15)


async def history_of(connect: Opener, server: MinimalServer, user: str, conversation_id: str) -> Event:
    client, _ = await opened(connect, server, user, conversation_id=conversation_id)
    history = await client.expect("history", 5)
    await client.close()
    return history


async def test_history_lays_out_each_run_as_produced_with_its_ids(minimal: MinimalServer, connect: Opener):
    client, session = await opened(connect, minimal, "layout", conversation_id="new")
    tool = await run(client, "asp-fixture:tool", "m-tool")
    empty = await run(client, "asp-fixture:text 0")
    failed = await run(client, "asp-fixture:model_error", "m-fail")
    await client.send({"type": "message", "id": "m-cut", "content": "asp-fixture:slow_tool 5000"})
    call = await client.expect("tool_call", 5)
    await client.send({"type": "cancel"})
    cut = await client.expect("complete", 5)
    await client.close()
    history = await history_of(connect, minimal, "layout", session["conversation_id"])
    runs = [tool[0]["run_id"], empty[0]["run_id"], failed[0]["run_id"], cut["run_id"]]
    minted = empty[0]["message_id"]
    assert history["messages"] == [
        {"role": "user", "content": "asp-fixture:tool", "message_id": "m-tool", "run_id": runs[0]},
        {
            "role": "tool",
            "tool_call_id": tool[1]["tool_call_id"],
            "name": "add",
            "arguments": {"a": 2, "b": 3},
            "content": 5,
            "is_error": False,
            "run_id": runs[0],
        },
        {"role": "assistant", "content": "The sum is 5.", "run_id": runs[0]},
        {"role": "user", "content": "asp-fixture:text 0", "message_id": minted, "run_id": runs[1]},
        {"role": "user", "content": "asp-fixture:model_error", "message_id": "m-fail", "run_id": runs[2]},
        {"role": "assistant", "content": "t0 ", "run_id": runs[2]},
        {"role": "user", "content": "asp-fixture:slow_tool 5000", "message_id": "m-cut", "run_id": runs[3]},
        {
            "role": "tool",
            "tool_call_id": call["tool_call_id"],
            "name": "sleep",
            "arguments": {"ms": 5000},
            "content": "the run ended before the tool returned",
            "is_error": True,
            "run_id": runs[3],
        },
    ]
    assert [e["type"] for e in empty] == ["run_started", "complete"] and empty[-1]["finish_reason"] == "stop"
    assert cut["finish_reason"] == "cancelled"


async def test_errors_carry_ids_as_1_1_says(minimal: MinimalServer, connect: Opener):
    client, _ = await opened(connect, minimal, "error-ids", conversation_id="new")
    failed = await run(client, "asp-fixture:model_error")
    (error,) = [e for e in failed if e["type"] == "error"]
    assert (error["run_id"], error["message_id"]) == (failed[0]["run_id"], failed[0]["message_id"])  # minted
    await client.send({"type": "message", "id": "long", "content": "asp-fixture:slow 3 300"})
    started = await client.expect("run_started", 5)
    await client.send({"type": "message", "id": "early", "content": "too soon"})
    await client.send({"type": "message", "content": "too soon, no id"})
    await client.send({"type": "cancel", "id": "bad id!", "run_id": "no_such_run"})
    await client.send({"type": "cancel", "id": "c1", "run_id": "no_such_run"})
    errors = [await client.expect("error", 5) for _ in range(4)]
    assert [(e["code"], e.get("message_id"), "run_id" in e) for e in errors] == [
        ("run_in_progress", "early", False),
        ("run_in_progress", None, False),  # no id sent: none in the error, never a minted one
        ("invalid_message", None, False),  # the id is not valid
        ("no_active_run", "c1", False),  # another run named: the active one goes on
    ]
    complete = await client.expect("complete", 5)
    assert complete["run_id"] == started["run_id"] and complete["finish_reason"] == "stop"


async def test_conversations_are_bound_as_1_1_says(minimal: MinimalServer, connect: Opener):
    first, session = await opened(connect, minimal, "binder", conversation_id="new")
    await run(first, "remember me")
    await first.close()
    fresh, fresh_session = await opened(connect, minimal, "binder", conversation_id="new")
    assert fresh_session["conversation_id"] != session["conversation_id"]
    await fresh.send({"type": "ping", "id": "no-history"})
    assert (await fresh.expect(lambda e: e["type"] in ("history", "pong"), 5))["type"] == "pong"
    await fresh.close()
    plain, plain_session = await opened(connect, minimal, "binder")  # the last bound, though empty
    assert plain_session["conversation_id"] == fresh_session["conversation_id"]
    await plain.close()
    for odd in ("", "not/valid", "conv_unknown"):
        client, odd_session = await opened(connect, minimal, "binder", conversation_id=odd)
        error = await client.expect("error", 5)
        assert error["code"] == "conversation_not_found" and "message_id" not in error
        assert odd_session["conversation_id"] not in (session["conversation_id"], odd)
        await client.close()
    again, _ = await opened(connect, minimal, "binder", conversation_id=session["conversation_id"])
    history = await again.expect("history", 5)
    assert history["messages"][0]["content"] == "remember me"


async def test_the_rate_limit_is_per_user_across_connections_and_only_runs_count(
    make_minimal: Starter, connect: Opener
):
    server = make_minimal(rate_limit_messages=2, rate_limit_window_ms=1500)
    first, session = await opened(connect, server, "rater", conversation_id="new")
    began = time.monotonic()
    await run(first, "one")
    await first.send({"type": "message", "id": "elsewhere", "content": "x", "conversation_id": "conv_other"})
    assert (await first.expect("error", 5))["code"] == "conversation_not_found"  # refused: not counted
    await first.close()
    second, _ = await opened(connect, server, "rater", conversation_id=session["conversation_id"])
    await run(second, "two")
    await second.send({"type": "message", "id": "three", "content": "three"})
    refused = await second.expect("error", 5)
    assert refused["code"] == "rate_limited" and refused["message_id"] == "three"
    assert 0 < refused["retry_after_ms"] <= 1500
    assert time.monotonic() - began + refused["retry_after_ms"] / 1000 >= 1.4  # until "one" leaves
    other, _ = await opened(connect, server, "another-rater")
    assert (await run(other, "mine"))[-1]["finish_reason"] == "stop"  # per user
    await asyncio.sleep(refused["retry_after_ms"] / 1000 + 0.05)
    assert (await run(second, "four"))[-1]["finish_reason"] == "stop"


async def test_slow_sends_its_first_token_at_once_and_bulk_is_never_paced(
    make_minimal: Starter, connect: Opener
):
    server = make_minimal(token_delay_ms=200)
    client, _ = await opened(connect, server, "pacer", conversation_id="new")
    await client.send({"type": "message", "content": "asp-fixture:slow 2 2000"})
    await client.expect("run_started", 5)
    started = time.monotonic()
    await client.expect("text_delta", 5)
    assert time.monotonic() - started < 1.0  # not after the 2 s pace
    await client.expect("complete", 5)
    began = time.monotonic()
    events = await run(client, "asp-fixture:bulk 20 10")
    assert time.monotonic() - began < 1.5  # 20 tokens at the 200 ms pace would take 3.8 s
    assert "".join(e["delta"] for e in events if e["type"] == "text_delta") == ("b" * 9 + " ") * 20


async def test_no_event_exceeds_max_event_bytes_and_history_says_what_it_left_out(
    make_minimal: Starter, connect: Opener
):
    server = make_minimal(max_event_bytes=65_536, max_message_bytes=200_000)
    client, session = await opened(connect, server, "sizer", conversation_id="new")
    big = "w" * 100_000  # one word: its echo token alone is larger than an event may be
    events = await run(client, big)
    deltas = [e for e in events if e["type"] == "text_delta"]
    assert len(deltas) > 2 and "".join(d["delta"] for d in deltas) == "You said: " + big
    bulk = await run(client, "asp-fixture:bulk 2 65536")
    assert "".join(e["delta"] for e in bulk if e["type"] == "text_delta") == ("b" * 65_535 + " ") * 2
    await client.close()
    again, _ = await opened(connect, server, "sizer", conversation_id=session["conversation_id"])
    history = await again.expect("history", 5)
    assert history["truncated"] is True and history["omitted"] >= 2
    frames = again.transcript.frames + client.transcript.frames
    assert max(len((f.text or "").encode()) for f in frames if f.direction == "recv") <= 65_536
    newest = history["messages"][-1]
    assert (newest["role"] == "assistant" and newest["content"] == ("b" * 65_535 + " ") * 2) or newest.get(
        "truncated"
    )


async def test_conversations_survive_a_restart(make_minimal: Starter, connect: Opener):
    server = make_minimal()
    client, session = await opened(connect, server, "restarter", conversation_id="new")
    await run(client, "before the restart")
    await client.close()
    server.restart()
    history = await history_of(connect, server, "restarter", session["conversation_id"])
    contents = [m["content"] for m in history["messages"]]
    assert contents == ["before the restart", "You said: before the restart"]


async def test_a_lone_surrogate_from_a_client_is_echoed_and_stored_as_valid_utf8(
    minimal: MinimalServer, connect: Opener
):
    client, session = await opened(connect, minimal, "surrogate", conversation_id="new")
    await client.send('{"type": "message", "content": "odd \\ud800 text"}')  # valid JSON, not valid Unicode
    events = await client.collect_run(10)
    assert "".join(e["delta"] for e in events if e["type"] == "text_delta") == "You said: odd \ud800 text"
    await client.close()
    history = await history_of(connect, minimal, "surrogate", session["conversation_id"])
    assert history["messages"][0]["content"] == "odd \ud800 text"
