"""Runs stream over a real socket: session first, run_started, deltas that rebuild the text, complete."""

from __future__ import annotations

from conformance.context import text_of
from spec.fixtures import fixture_text, text_tokens
from tests.support.server import ServerProcess


async def test_session_is_the_first_event_and_announces_limits_and_capabilities(
    server: ServerProcess, connect
):
    client = await connect(server, user="stream-a")
    session = await client.recv()
    assert session["type"] == "session" and session["seq"] == 1
    assert session["user"]["id"] == "stream-a"
    assert session["limits"]["max_message_bytes"] == 65536
    assert {"history", "cancel", "resume", "fixtures"} <= set(session["capabilities"])
    assert client.subprotocol == "asp.v1"


async def test_a_message_streams_a_run_whose_deltas_rebuild_the_answer(server: ServerProcess, connect):
    client = await connect(server, user="stream-b", conversation_id="new")
    await client.expect("session")
    await client.send({"type": "message", "id": "m1", "content": "asp-fixture:text 25"})
    run = await client.collect_run()
    assert run[0]["message_id"] == "m1"
    assert text_of(run) == fixture_text(25)
    assert run[-1]["finish_reason"] == "stop"


async def test_tool_calls_are_answered_before_complete(server: ServerProcess, connect):
    client = await connect(server, user="stream-c", conversation_id="new")
    await client.send({"type": "message", "content": "asp-fixture:tool"})
    run = await client.collect_run()
    call = next(e for e in run if e["type"] == "tool_call")
    result = next(e for e in run if e["type"] == "tool_result")
    assert (call["name"], call["arguments"]) == ("add", {"a": 2, "b": 3})
    assert (
        result["tool_call_id"] == call["tool_call_id"] and result["content"] == 5 and not result["is_error"]
    )
    assert "The sum is 5." in text_of(run)


async def test_a_failing_tool_gives_an_error_result_and_the_run_goes_on(server: ServerProcess, connect):
    client = await connect(server, user="stream-d", conversation_id="new")
    await client.send({"type": "message", "content": "asp-fixture:tool_error"})
    run = await client.collect_run()
    result = next(e for e in run if e["type"] == "tool_result")
    assert result["is_error"] is True
    assert run[-1]["finish_reason"] == "stop"
    assert "failed" in text_of(run)


async def test_a_model_failure_is_an_error_of_the_run_then_complete_error(server: ServerProcess, connect):
    client = await connect(server, user="stream-e", conversation_id="new")
    await client.send({"type": "message", "content": "asp-fixture:model_error"})
    run = await client.collect_run()
    error = next(e for e in run if e["type"] == "error")
    assert error["code"] == "model_error" and error["retryable"] is True
    assert "Traceback" not in error["message"] and "OfflineModelFailure" not in error["message"]
    assert run[-1]["finish_reason"] == "error"


async def test_demo_calculator_is_a_real_tool(server: ServerProcess, connect):
    client = await connect(server, user="stream-f", conversation_id="new")
    await client.send({"type": "message", "content": "calculate 6 * 7 + 1"})
    run = await client.collect_run()
    result = next(e for e in run if e["type"] == "tool_result")
    assert result["content"] == 43
    assert "43" in text_of(run)


async def test_an_instant_models_deltas_are_coalesced_and_the_text_is_exact(server: ServerProcess, connect):
    client = await connect(server, user="stream-g", conversation_id="new")
    await client.send({"type": "message", "content": "asp-fixture:text 3000"})
    run = await client.collect_run()
    deltas = [e for e in run if e["type"] == "text_delta"]
    assert text_of(run) == fixture_text(3000)
    assert len(deltas) < 3000 / 4, f"{len(deltas)} events for 3000 instant tokens"
    assert deltas[0]["delta"] == "t0 "  # the first delta is never held back


async def test_a_paced_stream_is_sent_token_by_token(server: ServerProcess, connect):
    client = await connect(server, user="stream-h", conversation_id="new")
    await client.send({"type": "message", "content": "asp-fixture:slow 15 20"})
    run = await client.collect_run()
    assert [e["delta"] for e in run if e["type"] == "text_delta"] == text_tokens(15)
