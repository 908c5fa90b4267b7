"""The transport's fast path for text frames (`text_frame`, used by `send_now`) writes the bytes
websockets' own sans-I/O protocol writes, and is used only where those bytes are the same."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.protocol import Protocol, Side, State

from reference_server.transport import AspWebSocketProtocol, text_frame

LENGTHS = [0, 1, 124, 125, 126, 127, 1000, 65_534, 65_535, 65_536, 65_537, 200_000]


def websockets_frame(payload: bytes) -> bytes:
    protocol = Protocol(Side.SERVER, state=State.OPEN)
    protocol.send_text(payload)
    return b"".join(protocol.data_to_send())


@pytest.mark.parametrize("length", LENGTHS)
def test_ascii_frames_equal_websockets_own(length: int) -> None:
    payload = (b"0123456789abcdef" * (length // 16 + 1))[:length]
    assert text_frame(payload) == websockets_frame(payload)


@pytest.mark.parametrize("length", LENGTHS)
def test_non_ascii_frames_equal_websockets_own(length: int) -> None:
    text = ("é€😀"[length % 3] * length)[: max(0, length // 3)]
    payload = text.encode()
    assert text_frame(payload) == websockets_frame(payload)


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


def open_protocol(extensions: list[Any] | None = None) -> AspWebSocketProtocol:
    """An AspWebSocketProtocol in the state send_now sees on an open connection, without a server."""
    protocol = AspWebSocketProtocol.__new__(AspWebSocketProtocol)
    protocol.conn = Protocol(Side.SERVER, state=State.OPEN)  # type: ignore[assignment]
    if extensions:
        protocol.conn.extensions = extensions
    protocol.writable = asyncio.Event()
    protocol.writable.set()
    protocol.disconnected = False
    protocol.handshake_complete = True
    protocol.close_sent = False
    protocol.initial_response = None
    protocol.transport = FakeTransport()  # type: ignore[assignment]
    return protocol


def written(protocol: AspWebSocketProtocol) -> bytes:
    return b"".join(protocol.transport.written)  # type: ignore[attr-defined]


@pytest.mark.parametrize("length", [3, 126, 65_536])
def test_send_now_writes_one_plain_frame(length: int) -> None:
    protocol = open_protocol()
    text = "ü" * length
    assert protocol.send_now(text)
    assert written(protocol) == websockets_frame(text.encode())
    assert len(protocol.transport.written) == 1  # type: ignore[attr-defined]


def test_send_now_keeps_what_websockets_queued_first() -> None:
    """A frame websockets queued and nobody wrote yet (a pong) leaves first, as it did."""
    protocol = open_protocol()
    protocol.conn.send_pong(b"p")
    pong = Protocol(Side.SERVER, state=State.OPEN)
    pong.send_pong(b"p")
    assert protocol.send_now("hi")
    assert written(protocol) == b"".join(pong.data_to_send()) + websockets_frame(b"hi")


def test_send_now_compresses_through_websockets_when_deflate_is_negotiated() -> None:
    factory = ServerPerMessageDeflateFactory()
    _, extension = factory.process_request_params([], [])
    protocol = open_protocol([extension])
    text = "token " * 200
    assert protocol.send_now(text)
    frame = written(protocol)
    assert frame[0] == 0xC1  # FIN, RSV1 (compressed), text
    assert frame != text_frame(text.encode())


@pytest.mark.parametrize(
    "field, value", [("close_sent", True), ("disconnected", True), ("handshake_complete", False)]
)
def test_send_now_writes_nothing_when_the_connection_cannot_take_a_message(field: str, value: bool) -> None:
    protocol = open_protocol()
    setattr(protocol, field, value)
    assert not protocol.send_now("hi")
    assert written(protocol) == b""


def test_send_now_writes_nothing_while_the_transport_is_paused() -> None:
    protocol = open_protocol()
    protocol.writable.clear()  # uvicorn's send would wait for the transport to drain
    assert not protocol.send_now("hi")
    assert written(protocol) == b""


def test_send_now_raises_as_websockets_does_once_the_protocol_is_closing() -> None:
    protocol = open_protocol()
    protocol.conn.state = State.CLOSING
    with pytest.raises(Exception, match="closing"):
        protocol.send_now("hi")
    assert written(protocol) == b""
