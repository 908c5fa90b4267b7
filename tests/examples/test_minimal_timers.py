"""The minimal server's clocks and back-pressure, over real sockets.

The idle timer counts data frames only and restarts at a run's end (ASP-HB-005, ASP-HB-006); a
peer that answers no Ping is closed 4005 (ASP-HB-001); a client that stops reading is closed 4004
without slowing anyone else, and its session stays resumable (ASP-LIM-005).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from urllib.parse import urlsplit

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.examples.conftest import MinimalServer, Opener, Starter


async def test_websocket_pings_do_not_keep_a_connection_from_idling_out(
    make_minimal: Starter, connect: Opener
):
    server = make_minimal(idle_timeout_ms=1000)
    # Before the connect: the server's idle clock starts when it accepts the connection, which a
    # busy machine may put a few hundred ms before this client reads `session`.
    opened = time.monotonic()
    client = await connect(server, "pinger")
    await client.expect("session", 5)
    # Control frames only, every 200 ms, for as long as ten idle periods: a server that counted
    # them as activity never closes while they flow; the minimal server closes about one idle
    # period after the connect, however late a busy machine runs this loop.
    pinging_until = opened + 10.0
    while client.websocket.close_code is None and time.monotonic() < pinging_until:
        try:
            await client.websocket.ping()
        except Exception:
            break
        await asyncio.sleep(0.2)
    closed_while_pinging = time.monotonic() < pinging_until
    assert await client.wait_closed(5) == 4003
    assert closed_while_pinging, "the connection outlived ten idle periods of pings: pings kept it open"
    assert time.monotonic() - opened >= 0.9  # not before its idle period


async def test_the_idle_period_counts_from_the_end_of_the_last_run(make_minimal: Starter, connect: Opener):
    server = make_minimal(idle_timeout_ms=1000)
    client = await connect(server, "long-runner")
    await client.expect("session", 5)
    await client.send({"type": "message", "content": "asp-fixture:slow 4 500"})  # 1.5 s, no client frame
    await client.expect("complete", 5)
    ended = time.monotonic()
    assert await client.wait_closed(5) == 4003
    assert time.monotonic() - ended >= 0.9  # a full idle_timeout_ms after complete


async def test_a_peer_that_answers_no_ping_is_closed_4005(make_minimal: Starter, connect: Opener):
    server = make_minimal(heartbeat_interval_ms=300)
    client = await connect(server, "deaf")
    await client.expect("session", 5)
    client.websocket.transport.pause_reading()  # the server's Pings stay unread, unanswered
    await asyncio.sleep(1.0)
    client.websocket.transport.resume_reading()
    assert await client.wait_closed(5) == 4005


async def stalled_client(server: MinimalServer, user: str) -> ClientConnection:
    """A client with a small receive buffer (no kernel autotuning to absorb megabytes for it)."""
    address = urlsplit(server.url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.connect((address.hostname, address.port))
    sock.setblocking(False)
    token = server.token(user)
    return await ws_connect(f"{server.url}?token={token}", sock=sock, subprotocols=[Subprotocol("asp.v1")])


async def test_a_client_that_stops_reading_is_closed_4004_and_nobody_else_waits(
    make_minimal: Starter, connect: Opener
):
    # A server that made everybody wait on the stalled writer holds the other connection's pongs
    # for about the send timeout; one that does not answers them at once. The deadline sits far
    # below the send timeout and far above anything a busy machine adds (the run's 16 MB store is
    # written in the server's event loop: 0.6 s measured with four CPU hogs beside it).
    send_timeout_s = 30.0
    server = make_minimal(
        send_timeout_ms=int(send_timeout_s * 1000), max_pending_events=200, replay_window=3000
    )
    stalled = await stalled_client(server, "stalled")
    session = json.loads(await stalled.recv())
    other = await connect(server, "reader")
    await other.expect("session", 10)
    stalled.transport.pause_reading()
    await stalled.send(json.dumps({"type": "message", "content": "asp-fixture:bulk 2000 8192"}))  # 16 MB
    for number in range(10):  # meanwhile another connection is served without the stalled one's wait
        await other.send({"type": "ping", "id": f"p{number}"})
        await other.expect(lambda e, n=number: e.get("id") == f"p{n}", send_timeout_s / 3)
        await asyncio.sleep(0.1)
    stalled.transport.resume_reading()
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(stalled.recv(), 10)
    assert stalled.close_code in (4004, None)  # None: aborted before the close frame could leave
    again = await connect(server, "stalled", conversation_id=session["conversation_id"])
    await again.expect("history", 10)
    await again.send({"type": "resume", "session_id": session["session_id"], "last_seq": 1})
    resumed = await again.expect("resumed", 10)
    assert resumed["replay_from"] == 2 and resumed["replay_count"] == 2002  # run_started, deltas, complete
    complete = await again.expect("complete", 30)  # after 16 MB of replay
    assert complete["finish_reason"] == "stop"
