"""A client that stops reading is closed with 4004; its session stays; other clients are not slowed."""

from __future__ import annotations

import asyncio
import socket
import time

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from conformance.wire import with_query
from spec.oracle import Oracle


async def test_a_client_that_stops_reading_is_closed_4004_and_others_stream_on(make_server, connect):
    server = make_server(send_timeout_ms=300, max_pending_events=200)
    host, port = server.url.split("//")[1].split("/")[0].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sleeper = await ws_connect(
        with_query(server.url, token=server.token("slow-reader")), sock=sock, max_queue=1, compression=None
    )
    # about 10 MB of text, far more than the kernel's socket buffers hold
    await sleeper.send('{"type": "message", "content": "asp-fixture:bulk 2500 4000"}')

    healthy = await connect(server, user="fast-reader", conversation_id="new")
    await healthy.expect("session")
    started = time.monotonic()
    await healthy.send({"type": "message", "content": "asp-fixture:text 200"})
    await healthy.collect_run()
    assert time.monotonic() - started < 3
    await asyncio.sleep(2)  # the sleeper still has not read a thing

    received = 0
    oracle = Oracle()
    try:
        while True:
            frame = await asyncio.wait_for(sleeper.recv(), 10)
            assert isinstance(frame, str)
            received += len(frame)
            oracle.feed_text(frame)
    except ConnectionClosed:
        pass
    assert sleeper.close_code == 4004
    oracle.feed_close(sleeper.close_code)
    assert oracle.violations == []
    assert received < 10_000_000  # it was cut off, not served everything
    assert "closing slow consumer" in server.logs
