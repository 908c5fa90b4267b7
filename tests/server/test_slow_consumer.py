"""A client that stops reading is closed with 4004, or dropped when even the close cannot reach it;
its session stays; other clients are not slowed (ASP-LIM-005, defect 12)."""

from __future__ import annotations

import asyncio
import socket
import time

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from conformance.wire import with_query
from spec.oracle import Oracle
from spec.registry import close_code
from tests.support.server import ServerProcess

SLOW_CONSUMER = close_code("slow_consumer")


async def stalled_reader(server: ServerProcess, user: str, prompt: str):
    """A client with a tiny receive buffer that sends `prompt` and reads nothing until told."""
    host, port = server.url.split("//")[1].split("/")[0].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    client = await ws_connect(
        with_query(server.url, token=server.token(user)),
        sock=sock,
        max_queue=1,
        compression=None,
        ping_interval=None,
        max_size=None,
    )
    await client.send(prompt)
    return client


async def read_all(client, within: float) -> tuple[int, Oracle, float]:
    """Read until the connection ends; (bytes of text read, the oracle, seconds it took)."""
    received, oracle, started = 0, Oracle(), time.monotonic()
    try:
        while True:
            frame = await asyncio.wait_for(client.recv(), within)
            assert isinstance(frame, str)
            received += len(frame)
            oracle.feed_text(frame)
    except ConnectionClosed:
        pass
    return received, oracle, time.monotonic() - started


async def test_a_client_that_stops_reading_is_closed_4004_and_others_stream_on(make_server, connect):
    server = make_server(send_timeout_ms=2000, max_pending_events=200, heartbeat_interval_ms=60000)
    sleeper = await stalled_reader(
        server, "slow-reader", '{"type": "message", "content": "asp-fixture:bulk 2500 4000"}'
    )
    healthy = await connect(server, user="fast-reader", conversation_id="new")
    await healthy.expect("session")
    started = time.monotonic()
    await healthy.send({"type": "message", "content": "asp-fixture:text 200"})
    await healthy.collect_run()
    assert time.monotonic() - started < 3
    # read again right after the server gave up on the sleeper: the close is waiting behind the data
    assert await asyncio.get_running_loop().run_in_executor(
        None, server.wait_for_log, "closing slow consumer", 20
    )
    received, oracle, _ = await read_all(sleeper, 10)
    assert sleeper.close_code == SLOW_CONSUMER
    oracle.feed_close(sleeper.close_code)
    assert oracle.violations == []
    assert received < 10_000_000  # it was cut off, not served everything


async def test_defect_12_a_client_that_never_reads_again_is_dropped_not_kept_as_a_zombie(make_server):
    """The close frame cannot be written to a client that reads nothing: the transport is dropped
    within send_timeout of the close, so the client sees the end of the stream (then resumes)."""
    send_timeout_s = 1.0
    server = make_server(
        send_timeout_ms=int(send_timeout_s * 1000), token_delay_ms=0, heartbeat_interval_ms=60000
    )
    sleeper = await stalled_reader(
        server, "zombie", '{"type": "message", "content": "asp-fixture:bulk 20000 1000"}'
    )
    assert await asyncio.get_running_loop().run_in_executor(
        None, server.wait_for_log, "closing slow consumer", 20
    )
    # Silent for longer than any close could wait behind the full buffer (the defect gave up after
    # 5 s and left the socket open): by then the transport must be gone.
    await asyncio.sleep(max(send_timeout_s * 2, 5) + 3)
    received, _, took = await read_all(sleeper, 5)
    assert sleeper.close_code in (SLOW_CONSUMER, 1006), sleeper.close_code
    assert received < 20_000_000
    assert took < 5  # the stream ended: not a live socket that sends nothing


async def test_a_client_reading_at_once_is_not_closed_4004_while_a_fast_burst_gathers(make_server, connect):
    """ASP-LIM-005 bounds what waits for a client that is not reading. Deltas of an instant model
    gather for the coalescing window by the server's choice and leave as one event: with
    max_pending_events 10 a client reading every frame at once was closed 4004 when a burst put
    11 deltas in one window. The outbox counts the events it will send."""
    server = make_server(max_pending_events=10, token_delay_ms=0, coalesce_ms=20, heartbeat_interval_ms=60000)
    client = await connect(server, user="fast-reader", conversation_id="new")
    await client.expect("session")
    for _ in range(3):
        await client.send({"type": "message", "content": "asp-fixture:text 2000"})
        events = await client.collect_run(timeout=30)
        assert events[-1]["type"] == "complete" and events[-1]["finish_reason"] == "stop"
        deltas = [event for event in events if event["type"] == "text_delta"]
        assert "".join(event["delta"] for event in deltas).count(" ") == 2000
        assert len(deltas) < 2000  # they gathered: merged into fewer events
    assert client.close_code is None
