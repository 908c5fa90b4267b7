"""Heartbeats and the idle timeout: WebSocket pings every heartbeat_interval_ms, 4005 for a peer
that answers none (ASP-HB-001), 4003 for a quiet connection (ASP-HB-002), counted from the later
of the last data frame and the end of the last run (ASP-HB-005, ASP-HB-006)."""

from __future__ import annotations

import asyncio
import time

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from conformance.wire import with_query
from spec import SUBPROTOCOL
from spec.registry import close_code
from tests.support.server import ServerProcess


async def silent_client(
    server: ServerProcess, user: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, ClientProtocol]:
    """A WebSocket client that completes the handshake and then never answers a ping."""
    uri = parse_uri(with_query(server.url, token=server.token(user)))
    protocol = ClientProtocol(uri, subprotocols=[SUBPROTOCOL])  # type: ignore[list-item]
    reader, writer = await asyncio.open_connection(uri.host, uri.port)
    protocol.send_request(protocol.connect())
    writer.write(b"".join(protocol.data_to_send()))
    await writer.drain()
    return reader, writer, protocol


async def frames_until_close(
    reader: asyncio.StreamReader, protocol: ClientProtocol, within: float
) -> list[tuple[float, Frame]]:
    """Frames the server sends (with arrival times) until it closes; nothing is ever answered."""
    started, seen = time.monotonic(), []
    while time.monotonic() - started < within:
        try:
            data = await asyncio.wait_for(reader.read(65536), within)
        except TimeoutError:
            break
        if not data:
            protocol.receive_eof()
        else:
            protocol.receive_data(data)
        for event in protocol.events_received():
            if isinstance(event, Frame):
                seen.append((time.monotonic() - started, event))
                if event.opcode is Opcode.CLOSE:
                    return seen
        if not data:
            break
    return seen


async def test_defect_8_a_peer_that_answers_no_ping_is_closed_4005_not_1011(make_server):
    interval = 0.4
    server = make_server(heartbeat_interval_ms=int(interval * 1000), idle_timeout_ms=60000)
    reader, writer, protocol = await silent_client(server, "hb-silent")
    try:
        seen = await frames_until_close(reader, protocol, within=10)
    finally:
        writer.close()
    kinds = [frame.opcode for _, frame in seen]
    assert Opcode.PING in kinds and kinds[-1] is Opcode.CLOSE, kinds
    first_ping = next(t for t, frame in seen if frame.opcode is Opcode.PING)
    closed_at = seen[-1][0]
    assert interval * 0.8 <= first_ping <= interval + 5  # a ping every heartbeat_interval_ms
    assert interval * 0.8 <= closed_at - first_ping <= interval + 5  # no pong within the interval
    assert protocol.close_rcvd is not None and protocol.close_rcvd.code == close_code("heartbeat_timeout")


async def test_a_client_that_answers_pings_is_kept_and_pinged_every_interval(make_server, connect):
    server = make_server(heartbeat_interval_ms=300, idle_timeout_ms=60000)
    client = await connect(server, user="hb-answering")
    await client.expect("session")
    await asyncio.sleep(2)  # the websockets client answers every ping
    await client.send({"type": "ping", "id": "still"})
    assert (await client.expect("pong"))["id"] == "still"


async def test_a_quiet_connection_is_closed_4003_after_the_idle_timeout(make_server, connect):
    server = make_server(idle_timeout_ms=600)
    client = await connect(server, user="hb-a")
    session = await client.expect("session")
    assert session["limits"]["idle_timeout_ms"] == 600
    opened = time.monotonic()
    assert await client.wait_closed(10) == 4003
    assert 0.55 < time.monotonic() - opened < 0.6 + 5


async def test_pings_restart_the_idle_timer(make_server, connect):
    server = make_server(idle_timeout_ms=600)
    client = await connect(server, user="hb-b")
    await client.expect("session")
    for number in range(8):  # 1.6 s of pings every 200 ms, well past 600 ms
        await asyncio.sleep(0.2)
        await client.send({"type": "ping", "id": f"p{number}"})
        await client.expect("pong")
    assert client.close_code is None


async def test_websocket_control_frames_do_not_restart_the_idle_timer(make_server, connect):
    """ASP-HB-005: only data frames count; else no browser (which answers pings) would ever idle out."""
    server = make_server(idle_timeout_ms=800, heartbeat_interval_ms=200)
    client = await connect(server, user="hb-control")
    await client.expect("session")
    opened = time.monotonic()
    pinging = asyncio.create_task(_ping_forever(client))
    try:
        assert await client.wait_closed(10) == 4003
    finally:
        pinging.cancel()
    assert 0.75 < time.monotonic() - opened < 0.8 + 5


async def _ping_forever(client) -> None:
    while True:
        await asyncio.sleep(0.1)
        await client.websocket.ping()


async def test_after_a_run_the_connection_gets_a_full_idle_timeout(make_server, connect):
    """ASP-HB-006: a run longer than the idle timeout is not cut, and the idle period counts from
    its complete, not from the message that started it."""
    server = make_server(idle_timeout_ms=800)
    client = await connect(server, user="hb-c", conversation_id="new")
    await client.expect("session")
    await client.send({"type": "message", "content": "asp-fixture:slow 12 100"})
    complete = await client.expect("complete", 10)
    completed = time.monotonic()
    assert complete["finish_reason"] == "stop"
    assert await client.wait_closed(10) == 4003
    assert time.monotonic() - completed > 0.7
