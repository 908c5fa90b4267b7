"""History: stored per exchange, sent on reconnect, seen by the agent, durable, and owner-only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from conformance.context import text_of
from spec.fixtures import fixture_text
from tests.support.server import ServerProcess


def plain(entry: dict) -> dict:
    """A history entry without its ids (run_id, message_id), for comparing content."""
    return {k: v for k, v in entry.items() if k not in ("run_id", "message_id")}


async def history_once(
    server: ServerProcess, connect: Callable[..., Any], user: str, conversation: str, stored: int
) -> list[dict[str, Any]]:
    """The conversation's history as a new connection of `user` gets it, once it holds `stored`
    entries: reconnecting while a run the server carries on alone has not been stored yet (a busy
    machine can make a run of 0.6 s take much longer), for at most 20 s."""
    deadline = time.monotonic() + 20
    while True:
        again = await connect(server, user=user, conversation_id=conversation)
        messages: list[dict[str, Any]] = (await again.expect("history", 10))["messages"]
        await again.close()
        if len(messages) >= stored or time.monotonic() > deadline:
            return messages
        await asyncio.sleep(0.2)


async def test_reconnect_gets_history_and_the_next_answer_sees_earlier_turns(server: ServerProcess, connect):
    first = await connect(server, user="his-a", conversation_id="new")
    conversation = (await first.expect("session"))["conversation_id"]
    for content in ("alpha", "beta"):
        await first.send({"type": "message", "content": content})
        await first.collect_run()
    await first.close()

    second = await connect(server, user="his-a", conversation_id=conversation)
    history = await second.expect("history")
    assert history["seq"] == 2
    assert [m["content"] for m in history["messages"] if m["role"] == "user"] == ["alpha", "beta"]
    assert all(m["content"].startswith("You said") for m in history["messages"] if m["role"] == "assistant")
    await second.send({"type": "message", "content": "asp-fixture:recall"})
    run = await second.collect_run()
    assert text_of(run) == "recall:alpha|beta"


async def test_without_a_conversation_id_the_latest_conversation_is_bound(server: ServerProcess, connect):
    first = await connect(server, user="his-latest", conversation_id="new")
    conversation = (await first.expect("session"))["conversation_id"]
    await first.send({"type": "message", "content": "hello"})
    await first.collect_run()
    await first.close()
    second = await connect(server, user="his-latest")
    assert (await second.expect("session"))["conversation_id"] == conversation
    await second.expect("history")


async def test_the_stored_text_is_exactly_the_streamed_text_including_tools(server: ServerProcess, connect):
    client = await connect(server, user="his-b", conversation_id="new")
    conversation = (await client.expect("session"))["conversation_id"]
    await client.send({"type": "message", "content": "asp-fixture:tool"})
    run = await client.collect_run()
    streamed = text_of(run)
    await client.close()
    again = await connect(server, user="his-b", conversation_id=conversation)
    messages = (await again.expect("history"))["messages"]
    assert "".join(m["content"] for m in messages if m["role"] == "assistant") == streamed
    tool = next(m for m in messages if m["role"] == "tool")
    assert (tool["name"], tool["arguments"], tool["content"], tool["is_error"]) == (
        "add",
        {"a": 2, "b": 3},
        5,
        False,
    )


async def test_history_survives_a_server_restart(make_server, connect, tmp_path):
    server = make_server(database=tmp_path / "durable.db")
    client = await connect(server, user="his-c", conversation_id="new")
    conversation = (await client.expect("session"))["conversation_id"]
    await client.send({"type": "message", "content": "before the restart"})
    await client.collect_run()
    await client.close()
    server.restart()
    again = await connect(server, user="his-c", conversation_id=conversation)
    history = await again.expect("history")
    assert plain(history["messages"][0]) == {"role": "user", "content": "before the restart"}
    await again.send({"type": "message", "content": "asp-fixture:recall"})
    run = await again.collect_run()
    assert text_of(run) == "recall:before the restart"


async def test_a_client_killed_mid_run_loses_nothing(server: ServerProcess, connect):
    client = await connect(server, user="his-d", conversation_id="new")
    conversation = (await client.expect("session"))["conversation_id"]
    await client.send({"type": "message", "content": "asp-fixture:slow 30 20"})
    await client.expect("text_delta")
    client.abort()
    await asyncio.sleep(0.6)  # the run goes on without the client: 30 tokens x 20 ms
    messages = await history_once(server, connect, "his-d", conversation, stored=2)
    assert plain(messages[-1]) == {"role": "assistant", "content": fixture_text(30)}


async def test_a_user_cannot_read_another_users_conversation(server: ServerProcess, connect):
    owner = await connect(server, user="his-owner", conversation_id="new")
    conversation = (await owner.expect("session"))["conversation_id"]
    await owner.send({"type": "message", "content": "secret plans"})
    await owner.collect_run()
    await owner.close()
    intruder = await connect(server, user="his-intruder", conversation_id=conversation)
    session = await intruder.expect("session")
    assert session["conversation_id"] != conversation
    error = await intruder.expect("error")
    assert error["code"] == "conversation_not_found"
    await intruder.send({"type": "ping", "id": "p"})
    await intruder.expect("pong")
    assert not any(e["type"] == "history" for e in intruder.events)
    assert "secret plans" not in str(intruder.events)


async def test_a_user_cannot_write_into_another_users_conversation(server: ServerProcess, connect):
    owner = await connect(server, user="his-owner2", conversation_id="new")
    conversation = (await owner.expect("session"))["conversation_id"]
    await owner.send({"type": "message", "content": "mine"})
    await owner.collect_run()
    await owner.close()
    intruder = await connect(server, user="his-intruder2", conversation_id="new")
    await intruder.expect("session")
    await intruder.send(
        {"type": "message", "id": "w1", "content": "injected", "conversation_id": conversation}
    )
    error = await intruder.expect("error")
    assert (error["code"], error["message_id"]) == ("conversation_not_found", "w1")
    again = await connect(server, user="his-owner2", conversation_id=conversation)
    messages = (await again.expect("history"))["messages"]
    assert "injected" not in str(messages) and messages[0]["content"] == "mine"


async def test_a_superseded_connections_run_finishes_and_is_stored(server: ServerProcess, connect):
    first = await connect(server, user="his-e", conversation_id="new")
    conversation = (await first.expect("session"))["conversation_id"]
    await first.send({"type": "message", "content": "asp-fixture:slow 20 20"})
    await first.expect("text_delta")
    second = await connect(server, user="his-e", conversation_id=conversation)
    await second.expect("session")
    assert await first.wait_closed(5) == 4002
    await asyncio.sleep(0.4)  # the superseded run goes on: 20 tokens x 20 ms
    messages = await history_once(server, connect, "his-e", conversation, stored=2)
    assert messages[-1]["content"] == fixture_text(20)


async def test_defect_2_overlapping_runs_of_one_conversation_are_both_stored(server: ServerProcess, connect):
    """A superseded connection's run and its successor's run both land, neither erases the other."""
    first = await connect(server, user="his-overlap", conversation_id="new")
    conversation = (await first.expect("session"))["conversation_id"]
    await first.send({"type": "message", "id": "long", "content": "asp-fixture:slow 30 50"})
    long_run = (await first.expect("run_started"))["run_id"]
    await first.expect("text_delta")
    second = await connect(server, user="his-overlap", conversation_id=conversation)
    await second.expect("session")
    assert await first.wait_closed(5) == 4002
    await second.send({"type": "message", "id": "short", "content": "short one"})
    short = await second.collect_run()
    assert short[-1]["finish_reason"] == "stop"
    # the long run goes on in its session (ASP-DUP-003): wait for it to be stored, as history shows
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        third = await connect(server, user="his-overlap", conversation_id=conversation)
        messages = (await third.expect("history"))["messages"]
        await third.close()
        if any(m["content"] == fixture_text(30) for m in messages):  # the long run is stored
            break
        assert asyncio.get_running_loop().time() < deadline, messages
        await asyncio.sleep(0.2)
    users = [m["content"] for m in messages if m["role"] == "user"]
    assert sorted(users) == ["asp-fixture:slow 30 50", "short one"]  # neither exchange erased the other
    ids = {(m["message_id"], m["run_id"]) for m in messages if m["role"] == "user"}
    assert ids == {("long", long_run), ("short", short[0]["run_id"])}


async def test_history_layout_and_ids_per_exchange(server: ServerProcess, connect):
    """ASP-HIS-008/009: per exchange the user entry, then text and tool entries as produced, every
    entry with its run_id; user entries with the message_id of run_started; no text, no entry."""
    client = await connect(server, user="his-layout", conversation_id="new")
    conversation = (await client.expect("session"))["conversation_id"]
    await client.send({"type": "message", "id": "with-tool", "content": "asp-fixture:tool"})
    tool_run = await client.collect_run()
    await client.send({"type": "message", "content": "asp-fixture:text 0"})
    empty_run = await client.collect_run()
    await client.close()
    again = await connect(server, user="his-layout", conversation_id=conversation)
    messages = (await again.expect("history"))["messages"]
    assert [(m["role"], m["run_id"]) for m in messages] == [
        ("user", tool_run[0]["run_id"]),
        ("tool", tool_run[0]["run_id"]),
        ("assistant", tool_run[0]["run_id"]),
        ("user", empty_run[0]["run_id"]),
    ]
    assert messages[0]["message_id"] == "with-tool"
    assert messages[3]["message_id"] == empty_run[0]["message_id"]  # the minted one, as in run_started
    assert (messages[1]["content"], messages[2]["content"]) == (5, "The sum is 5.")


async def test_a_plain_reconnect_returns_to_the_last_bound_conversation_even_an_empty_one(
    server: ServerProcess, connect
):
    """ASP-SES-009 and decision 5: `new` creates a conversation a plain reconnect returns to."""
    first = await connect(server, user="his-bound", conversation_id="new")
    conversation = (await first.expect("session"))["conversation_id"]
    await first.send({"type": "message", "content": "hello"})
    await first.collect_run()
    await first.close()
    fresh = await connect(server, user="his-bound", conversation_id="new")
    empty = (await fresh.expect("session"))["conversation_id"]
    await fresh.close()
    plain_again = await connect(server, user="his-bound")
    assert (await plain_again.expect("session"))["conversation_id"] == empty
    await plain_again.close()
    named = await connect(server, user="his-bound", conversation_id=conversation)
    await named.expect("session")
    await named.close()
    last = await connect(server, user="his-bound")
    assert (await last.expect("session"))["conversation_id"] == conversation  # bound, not written


@pytest.mark.parametrize("requested", ["", "bad id!", "conv_" + "x" * 200])
async def test_an_empty_or_malformed_conversation_id_is_an_unknown_one(
    server: ServerProcess, connect, requested: str
):
    client = await connect(server, user="his-malformed", conversation_id=requested)
    session = await client.expect("session")
    assert session["conversation_id"] != requested
    assert (await client.expect("error"))["code"] == "conversation_not_found"
