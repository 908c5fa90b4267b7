"""Every close the server makes, made over a real socket and checked against the close-code table
(ASP-CLS-001): the kind of defect 8, where a dead peer got 1011, which the table gives to faults."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from conformance.wire import AspClient
from reference_server.protocol.connection import CloseReason
from spec.registry import close_codes
from tests.server.test_bad_input import BAD_FRAMES
from tests.server.test_heartbeats import frames_until_close, silent_client
from tests.server.test_slow_consumer import read_all, stalled_reader
from tests.server.test_unencodable import pump_failure

Trigger = Callable[..., Awaitable[int | None]]


async def version(make_server, connect) -> int | None:
    server = make_server()
    client = await AspClient.open(server.url, token=server.token("cc"), subprotocols=["asp.v9"])
    return await client.wait_closed(5)


async def unauthorized(make_server, connect) -> int | None:
    client = await AspClient.open(make_server().url, token="forged")
    return await client.wait_closed(5)


async def capacity(make_server, connect) -> int | None:
    server = make_server(max_connections=1)
    await (await connect(server, user="cc-holder")).expect("session")
    client = await AspClient.open(server.url, token=server.token("cc-other"))
    return await client.wait_closed(5)


async def superseded(make_server, connect) -> int | None:
    server = make_server()
    first = await connect(server, user="cc-dup")
    await first.expect("session")
    await (await connect(server, user="cc-dup")).expect("session")
    return await first.wait_closed(5)


async def idle(make_server, connect) -> int | None:
    client = await connect(make_server(idle_timeout_ms=300), user="cc-idle")
    return await client.wait_closed(5)


async def slow_consumer(make_server, connect) -> int | None:
    server = make_server(send_timeout_ms=2000, max_pending_events=100, heartbeat_interval_ms=60000)
    sleeper = await stalled_reader(
        server, "cc-slow", '{"type": "message", "content": "asp-fixture:bulk 2500 4000"}'
    )
    assert await asyncio.get_running_loop().run_in_executor(
        None, server.wait_for_log, "closing slow consumer", 20
    )
    await read_all(sleeper, 10)
    return sleeper.close_code


async def heartbeat(make_server, connect) -> int | None:
    reader, writer, protocol = await silent_client(make_server(heartbeat_interval_ms=300), "cc-silent")
    try:
        await frames_until_close(reader, protocol, within=10)
    finally:
        writer.close()
    return protocol.close_rcvd.code if protocol.close_rcvd else None


async def too_big(make_server, connect) -> int | None:
    client = await connect(make_server(), user="cc-big")
    limit = (await client.expect("session"))["limits"]["max_message_bytes"]
    await client.send("x" * (limit + 1))
    return await client.wait_closed(5)


async def invalid_utf8(make_server, connect) -> int | None:
    client = await connect(make_server(), user="cc-utf8")
    await client.expect("session")
    await client.websocket.send(b"\xff", text=True)
    return await client.wait_closed(5)


async def bad_frame(make_server, connect) -> int | None:
    client = await connect(make_server(), user="cc-frame")
    await client.expect("session")
    client.websocket.transport.write(BAD_FRAMES["unmasked"])
    return await client.wait_closed(5)


async def shutdown(make_server, connect) -> int | None:
    server = make_server()
    client = await connect(server, user="cc-down")
    await client.expect("session")
    stopping = asyncio.get_running_loop().run_in_executor(None, server.stop)
    code = await client.wait_closed(10)
    await stopping
    return code


async def server_fault(make_server, connect) -> int | None:
    """No client input can make the pump fail any more: a real Session whose sink fails unexpectedly."""
    session, sink = await pump_failure()
    await session.close()
    return sink.closed_with


TRIGGERS: dict[CloseReason, Trigger] = {
    CloseReason.UNSUPPORTED_VERSION: version,
    CloseReason.UNAUTHORIZED: unauthorized,
    CloseReason.AT_CAPACITY: capacity,
    CloseReason.SUPERSEDED: superseded,
    CloseReason.IDLE: idle,
    CloseReason.SLOW_CONSUMER: slow_consumer,
    CloseReason.HEARTBEAT: heartbeat,
    CloseReason.TOO_BIG: too_big,
    CloseReason.INVALID_UTF8: invalid_utf8,
    CloseReason.BAD_FRAME: bad_frame,
    CloseReason.SHUTDOWN: shutdown,
    CloseReason.SERVER_FAULT: server_fault,
}


@pytest.mark.parametrize("reason", list(CloseReason), ids=lambda r: r.name)
async def test_each_close_path_uses_the_code_the_table_gives_its_situation(
    make_server, connect, reason: CloseReason
):
    entry = close_codes()[reason.code]
    assert entry.name == reason.value and entry.sent_by in ("server", "both")
    trigger = TRIGGERS[reason]  # a new close path without a trigger fails here
    assert await trigger(make_server, connect) == reason.code
