"""Graceful shutdown: clients get 1012, the running run finishes and is stored."""

from __future__ import annotations

import asyncio

from spec.fixtures import fixture_text


async def test_shutdown_closes_1012_and_the_active_run_is_finished_and_stored(make_server, connect, tmp_path):
    server = make_server(database=tmp_path / "shutdown.db", shutdown_grace_ms=5000)
    client = await connect(server, user="down-a", conversation_id="new")
    conversation = (await client.expect("session"))["conversation_id"]
    await client.send({"type": "message", "content": "asp-fixture:slow 20 40"})
    await client.expect("text_delta")
    stopping = asyncio.get_running_loop().run_in_executor(None, server.stop)
    assert await client.wait_closed(5) == 1012
    await stopping  # uvicorn re-raises SIGTERM after its graceful shutdown, so the exit status is -15
    assert "Application shutdown complete" in server.logs
    server.start()
    again = await connect(server, user="down-a", conversation_id=conversation)
    messages = (await again.expect("history"))["messages"]
    assert messages[-1] == {"role": "assistant", "content": fixture_text(20)}


async def test_a_run_past_the_grace_period_is_stored_as_far_as_it_got(make_server, connect, tmp_path):
    server = make_server(database=tmp_path / "grace.db", shutdown_grace_ms=300)
    client = await connect(server, user="down-b", conversation_id="new")
    conversation = (await client.expect("session"))["conversation_id"]
    await client.send({"type": "message", "content": "asp-fixture:slow 500 20"})
    await client.expect("text_delta")
    await asyncio.get_running_loop().run_in_executor(None, server.stop)
    server.start()
    again = await connect(server, user="down-b", conversation_id=conversation)
    messages = (await again.expect("history"))["messages"]
    assert messages[0]["content"] == "asp-fixture:slow 500 20"
    assert messages[-1]["role"] == "assistant" and messages[-1]["content"].startswith("t0 t1 ")
