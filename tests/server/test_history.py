"""History: stored per exchange, sent on reconnect, seen by the agent, durable, and owner-only."""

from __future__ import annotations

import asyncio

from conformance.context import text_of
from spec.fixtures import fixture_text
from tests.support.server import ServerProcess


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
    assert history["messages"][0] == {"role": "user", "content": "before the restart"}
    await again.send({"type": "message", "content": "asp-fixture:recall"})
    run = await again.collect_run()
    assert text_of(run) == "recall:before the restart"


async def test_a_client_killed_mid_run_loses_nothing(server: ServerProcess, connect):
    client = await connect(server, user="his-d", conversation_id="new")
    conversation = (await client.expect("session"))["conversation_id"]
    await client.send({"type": "message", "content": "asp-fixture:slow 30 20"})
    await client.expect("text_delta")
    client.abort()
    await asyncio.sleep(1.2)  # the run goes on without the client: 30 tokens x 20 ms
    again = await connect(server, user="his-d", conversation_id=conversation)
    messages = (await again.expect("history"))["messages"]
    assert messages[-1] == {"role": "assistant", "content": fixture_text(30)}


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
    await asyncio.sleep(0.8)
    third = await connect(server, user="his-e", conversation_id=conversation)
    messages = (await third.expect("history"))["messages"]
    assert messages[-1]["content"] == fixture_text(20)
