"""Each class of bad input gets the spec's answer; the connection survives and nothing stored is lost."""

from __future__ import annotations

import asyncio
import json

import pytest

from spec.registry import close_code
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


DEEP = [
    (
        "content nested 1000 deep",
        '{"type":"message","id":"d1","content":' + "[" * 1000 + "]" * 1000 + "}",
        "d1",
    ),
    (
        "content nested 20000 deep",
        '{"type":"message","id":"d2","content":' + "[" * 20000 + "]" * 20000 + "}",
        "d2",
    ),
    (
        "objects nested 5000 deep",
        '{"type":"message","id":"d3","content":' + '{"a":' * 5000 + "0" + "}" * 5000 + "}",
        "d3",
    ),
]


@pytest.mark.parametrize("frame,message_id", [(f, m) for _, f, m in DEEP], ids=[n for n, _, _ in DEEP])
async def test_defect_1_deep_nesting_is_invalid_message_and_the_connection_survives(
    server: ServerProcess, connect, frame: str, message_id: str
):
    client = await connect(server, user="bad-deep")
    await client.expect("session")
    await client.send(frame)
    error = await client.expect("error")
    assert (error["code"], error["message_id"]) == ("invalid_message", message_id)
    await client.send({"type": "ping", "id": "after"})
    assert (await client.expect("pong"))["id"] == "after"
    assert "RecursionError" not in server.logs


async def test_a_vendor_member_nested_deep_is_still_a_valid_ping(server: ServerProcess, connect):
    client = await connect(server, user="bad-deep-vendor")
    await client.expect("session")
    await client.send('{"type":"ping","id":"deep-x","x-deep":' + "[" * 3000 + "]" * 3000 + "}")
    assert (await client.expect("pong"))["id"] == "deep-x"


@pytest.mark.parametrize(
    "fragments",
    [[b"\xff\xfe"], [b'{"type":"ping","id":"\xc3', b'\xa9"}\xed\xa0\x80'], [b'{"type":"pi', b"\xc0\xaf"]],
    ids=["one frame", "a lone surrogate in the second fragment", "an overlong encoding across fragments"],
)
async def test_defect_9_invalid_utf8_in_a_text_message_closes_1007(
    server: ServerProcess, connect, fragments: list[bytes]
):
    """ASP-TRN-004: RFC 6455 wins over ASP-ERR-002 for text that is not UTF-8. The client's fault
    is one log line, not a traceback at ERROR (a client could fill the log with them)."""
    client = await connect(server, user="bad-utf8")
    await client.expect("session")
    logged_before = len(server.logs)
    message = fragments[0] if len(fragments) == 1 else fragments
    await client.websocket.send(message, text=True)
    assert await client.wait_closed(5) == close_code("invalid_payload")
    for _ in range(500):  # the server's output is read by a thread: up to 10 s
        logged = server.logs[logged_before:]
        if "sent text that is not UTF-8" in logged:
            break
        await asyncio.sleep(0.02)
    assert "sent text that is not UTF-8" in logged, logged
    assert "Traceback" not in logged and " ERROR " not in logged, logged


async def test_a_fragmented_message_is_reassembled_and_counted_whole(server: ServerProcess, connect):
    """ASP-LIM-010: fragments of a valid message are one message; the limit applies to the whole."""
    client = await connect(server, user="bad-fragments")
    limit = (await client.expect("session"))["limits"]["max_message_bytes"]
    await client.websocket.send(['{"type":"ping",', '"id":"frag"}'])
    assert (await client.expect("pong"))["id"] == "frag"
    pad = "a" * (limit // 3)
    await client.websocket.send(['{"type":"ping","x-pad":"', pad, pad, pad, '"}'])
    assert await client.wait_closed(5) == close_code("message_too_big")


def raw_frame(first_byte: int, payload: bytes, *, masked: bool = True) -> bytes:
    """A client frame written by hand (the mask key is zero, so the payload stays as given)."""
    length = len(payload)
    header = bytes([first_byte]) + (
        bytes([(0x80 if masked else 0) | length])
        if length < 126
        else bytes([(0x80 if masked else 0) | 126]) + length.to_bytes(2, "big")
    )
    return header + (b"\0\0\0\0" if masked else b"") + payload


BAD_FRAMES = {
    "unmasked": raw_frame(0x81, b'{"type":"ping"}', masked=False),  # RFC 6455 section 5.1
    "rsv bits": raw_frame(0x80 | 0x20 | 0x1, b"{}"),  # RSV2: no extension defines it (section 5.2)
    "control frame too big": raw_frame(0x89, b"p" * 200),  # a ping over 125 bytes (section 5.5)
    "continuation without start": raw_frame(0x80, b"abc"),  # section 5.4
}


@pytest.mark.parametrize("frame", list(BAD_FRAMES.values()), ids=list(BAD_FRAMES))
async def test_a_frame_that_breaks_rfc_6455_closes_1002(server: ServerProcess, connect, frame: bytes):
    """RFC 6455 section 7.4.1 requires 1002; the close-code table lists it (protocol_error, 1.1)."""
    client = await connect(server, user="bad-frame")
    await client.expect("session")
    client.websocket.transport.write(frame)
    assert await client.wait_closed(5) == close_code("protocol_error")


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"ping","id":"big","x-v":1e999999}',
        '{"type":"ping","id":"big","x-v":' + "9" * 5000 + "}",
        '{"type":"message","id":"big","content":"\\ud800 lone"}',
    ],
    ids=["beyond a double", "an integer beyond a double", "a lone surrogate escape"],
)
async def test_valid_json_out_of_range_is_invalid_message_and_the_connection_stays(
    server: ServerProcess, connect, frame: str
):
    """RFC 8259's grammar allows these; the value fits no schema: invalid_message, not invalid_json."""
    client = await connect(server, user="bad-range")
    await client.expect("session")
    await client.send(frame)
    error = await client.expect("error")
    assert (error["code"], error.get("message_id")) == ("invalid_message", "big")
    await client.send({"type": "ping", "id": "after"})
    assert (await client.expect("pong"))["id"] == "after"
