"""Each class of bad input gets the spec's answer; the connection survives and nothing stored is lost."""

from __future__ import annotations

import json

import pytest

from tests.support.server import ServerProcess

CASES = [
    ("not json", "invalid_json", None),
    ("[1, 2, 3]", "invalid_json", None),
    ('"just a string"', "invalid_json", None),
    (json.dumps({"content": "no type"}), "unknown_type", None),
    (json.dumps({"type": "subscribe", "id": "u1"}), "unknown_type", "u1"),
    (json.dumps({"type": "message", "id": "v1", "content": ""}), "invalid_message", "v1"),
    (json.dumps({"type": "message", "id": "v2", "content": 42}), "invalid_message", "v2"),
    (json.dumps({"type": "message", "id": "v3", "content": "hi", "extra": 1}), "invalid_message", "v3"),
    (json.dumps({"type": "cancel", "id": "v4", "run_id": 7}), "invalid_message", "v4"),
    (json.dumps({"type": "resume", "id": "v5", "session_id": "s"}), "invalid_message", "v5"),
    (json.dumps({"type": "message", "id": "bad id!", "content": ""}), "invalid_message", None),
]


@pytest.mark.parametrize("frame,code,message_id", CASES)
async def test_bad_text_frame_gets_its_error_and_the_connection_survives(
    server: ServerProcess, connect, frame: str, code: str, message_id: str | None
):
    client = await connect(server, user="bad-text")
    await client.expect("session")
    await client.send(frame)
    error = await client.expect("error")
    assert error["code"] == code and error["retryable"] is False
    assert error.get("message_id") == message_id
    assert "run_id" not in error
    await client.send({"type": "ping", "id": "after"})
    assert (await client.expect("pong"))["id"] == "after"


async def test_a_binary_frame_gets_unsupported_frame_and_the_connection_survives(
    server: ServerProcess, connect
):
    client = await connect(server, user="bad-binary")
    await client.expect("session")
    await client.send(b"\x00\x01binary")
    assert (await client.expect("error"))["code"] == "unsupported_frame"
    await client.send({"type": "ping", "id": "after"})
    await client.expect("pong")


async def test_bad_input_never_costs_stored_history(server: ServerProcess, connect):
    client = await connect(server, user="bad-history", conversation_id="new")
    session = await client.expect("session")
    await client.send({"type": "message", "content": "remember this"})
    await client.collect_run()
    for frame, _, _ in CASES:
        await client.send(frame)
    await client.send(b"\xff")
    for _ in range(len(CASES) + 1):
        await client.expect("error")
    await client.close()
    again = await connect(server, user="bad-history", conversation_id=session["conversation_id"])
    history = await again.expect("history")
    assert [m["content"] for m in history["messages"] if m["role"] == "user"] == ["remember this"]
