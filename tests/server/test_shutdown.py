"""Graceful shutdown (ASP-CLS-002, ASP-CLS-005): a run that fits the grace period finishes and the
client sees its complete before 1012; one that does not is cut with error shutting_down, stored
before its complete; a message during the shutdown gets shutting_down and is neither run nor stored."""

from __future__ import annotations

import asyncio
import time

from spec.fixtures import fixture_text


def history_text(messages: list[dict]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in messages if m["role"] in ("user", "assistant")]


async def test_defect_3_a_run_that_fits_the_grace_period_completes_is_stored_then_1012(
    make_server, connect, tmp_path
):
    server = make_server(database=tmp_path / "shutdown.db", shutdown_grace_ms=8000)
    client = await connect(server, user="down-a", conversation_id="new")
    conversation = (await client.expect("session"))["conversation_id"]
    await client.send({"type": "message", "content": "asp-fixture:slow 100 20"})
    await client.expect("text_delta")
    stopping = asyncio.get_running_loop().run_in_executor(None, server.stop)
    complete = await client.expect("complete", 10)
    assert complete["finish_reason"] == "stop"
    assert await client.wait_closed(10) == 1012
    await stopping  # uvicorn re-raises SIGTERM after its graceful shutdown, so the exit status is -15
    assert "Application shutdown complete" in server.logs
    server.start()
    again = await connect(server, user="down-a", conversation_id=conversation)
    messages = (await again.expect("history"))["messages"]
    assert history_text(messages) == [("user", "asp-fixture:slow 100 20"), ("assistant", fixture_text(100))]


async def test_a_run_past_the_grace_period_gets_shutting_down_and_is_stored_before_complete(
    make_server, connect, tmp_path
):
    server = make_server(database=tmp_path / "grace.db", shutdown_grace_ms=500)
    client = await connect(server, user="down-b", conversation_id="new")
    conversation = (await client.expect("session"))["conversation_id"]
    await client.send({"type": "message", "id": "long", "content": "asp-fixture:slow 500 20"})
    started = await client.expect("run_started")
    await client.expect("text_delta")
    stopping = asyncio.get_running_loop().run_in_executor(None, server.stop)
    error = await client.expect("error", 10)
    assert (error["code"], error["run_id"], error["message_id"]) == (
        "shutting_down",
        started["run_id"],
        "long",
    )
    assert error["retryable"] is True
    assert (await client.expect("complete", 5))["finish_reason"] == "error"
    assert await client.wait_closed(10) == 1012
    await stopping
    streamed = "".join(e["delta"] for e in client.events if e["type"] == "text_delta")
    server.start()
    again = await connect(server, user="down-b", conversation_id=conversation)
    messages = (await again.expect("history"))["messages"]
    assert history_text(messages) == [("user", "asp-fixture:slow 500 20"), ("assistant", streamed)]


async def test_a_message_during_the_shutdown_gets_shutting_down_and_is_neither_run_nor_stored(
    make_server, connect, tmp_path
):
    server = make_server(database=tmp_path / "refused.db", shutdown_grace_ms=3000)
    client = await connect(server, user="down-c", conversation_id="new")
    conversation = (await client.expect("session"))["conversation_id"]
    await client.send({"type": "message", "content": "asp-fixture:slow 40 25"})
    await client.expect("text_delta")
    stopping = asyncio.get_running_loop().run_in_executor(None, server.stop)
    assert server.wait_for_log("Shutting down", 10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the shutdown reaches this connection as soon as it begins
        await client.send({"type": "message", "id": "late", "content": "too late"})
        answer = await client.expect(lambda e: e.get("message_id") == "late", 5)
        if answer["type"] == "error" and answer["code"] == "run_in_progress":
            await asyncio.sleep(0.05)
            continue
        break
    assert (answer["type"], answer["code"], "run_id" in answer) == ("error", "shutting_down", False)
    assert (await client.expect("complete", 10))["finish_reason"] == "stop"
    assert await client.wait_closed(10) == 1012
    await stopping
    server.start()
    again = await connect(server, user="down-c", conversation_id=conversation)
    users = [m["content"] for m in (await again.expect("history"))["messages"] if m["role"] == "user"]
    assert users == ["asp-fixture:slow 40 25"]
