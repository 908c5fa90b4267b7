"""Every limit session.limits announces is exactly the one the server enforces (defect 4's kind).

One check per announced member, each reading the announced value from the session, not from the
settings; a member announced without a check here fails the test."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from conformance.wire import AspClient, Closed, with_query
from spec import SUBPROTOCOL
from tests.support.server import ServerProcess

SETTINGS = {
    "ASP_MAX_MESSAGE_BYTES": "2048",
    "ASP_HEARTBEAT_INTERVAL_MS": "300",
    "ASP_IDLE_TIMEOUT_MS": "800",
    "ASP_RATE_LIMIT_MESSAGES": "3",
    "ASP_RATE_LIMIT_WINDOW_MS": "4000",
    "ASP_REPLAY_WINDOW": "20",
    "ASP_SESSION_TTL_MS": "1000",
    "ASP_MAX_CONNECTIONS": "4",
    "ASP_MAX_EVENT_BYTES": "65536",
    "ASP_COALESCE_MS": "0",
}
Check = Callable[[ServerProcess, Any, dict[str, Any]], Awaitable[None]]


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory):
    process = ServerProcess(database=tmp_path_factory.mktemp("limits") / "asp.db", settings=SETTINGS).start()
    yield process
    process.stop()


async def max_message_bytes(server: ServerProcess, connect, limits: dict[str, Any]) -> None:
    limit = limits["max_message_bytes"]
    client = await connect(server, user="lim-bytes")
    await client.expect("session")
    empty = json.dumps({"type": "ping", "id": "p", "x-pad": ""})
    await client.send(json.dumps({"type": "ping", "id": "p", "x-pad": "a" * (limit - len(empty))}))
    assert (await client.expect("pong"))["id"] == "p"
    await client.send(json.dumps({"type": "ping", "id": "p", "x-pad": "a" * (limit + 1 - len(empty))}))
    assert await client.wait_closed(5) == 1009


async def heartbeat_interval_ms(server: ServerProcess, connect, limits: dict[str, Any]) -> None:
    """WebSocket pings arrive every heartbeat_interval_ms to a client that answers them."""
    interval = limits["heartbeat_interval_ms"] / 1000
    uri = parse_uri(with_query(server.url, token=server.token("lim-heartbeat")))
    protocol = ClientProtocol(uri, subprotocols=[SUBPROTOCOL])  # type: ignore[list-item]
    reader, writer = await asyncio.open_connection(uri.host, uri.port)
    protocol.send_request(protocol.connect())
    pings: list[float] = []
    try:
        while len(pings) < 5:
            writer.write(b"".join(protocol.data_to_send()))  # the handshake, then a pong per ping
            data = await asyncio.wait_for(reader.read(65536), interval * 5)
            assert data, f"closed after {len(pings)} pings"
            protocol.receive_data(data)
            for event in protocol.events_received():
                if isinstance(event, Frame) and event.opcode is Opcode.PING:
                    pings.append(time.monotonic())
                    protocol.send_text(b'{"type": "ping"}')  # a data frame: the idle timer restarts
    finally:
        writer.close()
    gaps = sorted(later - earlier for earlier, later in itertools.pairwise(pings))
    assert gaps[0] >= interval * 0.8, gaps  # never faster than announced
    assert gaps[len(gaps) // 2] <= interval * 2, gaps  # and not slower (a loaded machine may delay one)


async def idle_timeout_ms(server: ServerProcess, connect, limits: dict[str, Any]) -> None:
    idle = limits["idle_timeout_ms"] / 1000
    client = await connect(server, user="lim-idle")
    await client.expect("session")
    opened = time.monotonic()
    assert await client.wait_closed(idle + 10) == 4003
    assert idle * 0.95 <= time.monotonic() - opened <= idle + 5


async def rate_limit(server: ServerProcess, connect, limits: dict[str, Any]) -> None:
    allowed, window = limits["rate_limit"]["messages"], limits["rate_limit"]["window_ms"] / 1000
    client = await connect(server, user="lim-rate", conversation_id="new")
    await client.expect("session")
    first = time.monotonic()
    for number in range(allowed):
        await client.send({"type": "message", "id": f"ok{number}", "content": "asp-fixture:text 1"})
        await client.collect_run()
    await client.send({"type": "message", "id": "over", "content": "asp-fixture:text 1"})
    refused = await client.expect(lambda e: e.get("message_id") == "over")
    assert time.monotonic() - first < window, "the runs took longer than the window: nothing to prove"
    assert refused["code"] == "rate_limited" and 0 < refused["retry_after_ms"] <= window * 1000
    await quietly_alive(client, refused["retry_after_ms"] / 1000)  # ping: the idle timeout is shorter
    await client.send({"type": "message", "id": "after", "content": "asp-fixture:text 1"})
    assert (await client.expect(lambda e: e.get("message_id") == "after"))["type"] == "run_started"
    await client.expect("complete")


async def quietly_alive(client: AspClient, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(0.2, left))
        await client.send({"type": "ping"})
        await client.expect("pong")


async def _run_then_drop(server: ServerProcess, connect, user: str, tokens: int) -> tuple[str, int]:
    """A session that streamed `tokens` paced deltas and lost its connection: (session_id, last seq)."""
    client = await connect(server, user=user, conversation_id="new")
    session_id = (await client.expect("session"))["session_id"]
    await client.send({"type": "message", "content": f"asp-fixture:slow {tokens} 2"})
    run = await client.collect_run()
    client.abort()
    return session_id, run[-1]["seq"]


async def replay_window(server: ServerProcess, connect, limits: dict[str, Any]) -> None:
    window = limits["replay_window"]
    session_id, last = await _run_then_drop(server, connect, "lim-replay", window + 10)
    client = await connect(server, user="lim-replay", conversation_id="new")
    await client.expect("session")
    await client.send(
        {"type": "resume", "id": "one-too-many", "session_id": session_id, "last_seq": last - window - 1}
    )
    assert (await client.expect("error"))["code"] == "resume_failed"
    await client.send(
        {"type": "resume", "id": "exactly", "session_id": session_id, "last_seq": last - window}
    )
    resumed = await client.expect("resumed")
    assert resumed["replay_count"] == window
    assert [(await client.recv())["seq"] for _ in range(window)] == list(range(last - window + 1, last + 1))


async def session_ttl_ms(server: ServerProcess, connect, limits: dict[str, Any]) -> None:
    ttl = limits["session_ttl_ms"] / 1000
    kept, kept_last = await _run_then_drop(server, connect, "lim-ttl-a", 3)
    await asyncio.sleep(ttl * 0.3)
    client = await connect(server, user="lim-ttl-a")
    await client.expect("session")
    await client.send({"type": "resume", "session_id": kept, "last_seq": kept_last})
    assert (await client.expect(lambda e: e["type"] in ("resumed", "error")))["type"] == "resumed"
    gone, gone_last = await _run_then_drop(server, connect, "lim-ttl-b", 3)
    await asyncio.sleep(ttl + 1)
    late = await connect(server, user="lim-ttl-b")
    await late.expect("session")
    await late.send({"type": "resume", "session_id": gone, "last_seq": gone_last})
    assert (await late.expect(lambda e: e["type"] in ("resumed", "error")))["code"] == "resume_failed"


async def max_connections(server: ServerProcess, connect, limits: dict[str, Any]) -> None:
    limit = limits["max_connections"]
    opened = [await AspClient.open(server.url, token=server.token(f"lim-conn-{i}")) for i in range(limit + 1)]
    outcomes = []
    for client in opened:
        try:
            outcomes.append((await client.recv(5))["type"])
        except Closed:
            outcomes.append(client.close_code)
    assert outcomes.count("session") == limit and outcomes.count(1013) == 1, outcomes
    for client in opened:
        await client.close()


async def max_event_bytes(server: ServerProcess, connect, limits: dict[str, Any]) -> None:
    limit = limits["max_event_bytes"]
    client = await connect(server, user="lim-events", conversation_id="new")
    await client.expect("session")
    await client.send({"type": "message", "content": "asp-fixture:bulk 2 65536"})
    run = await client.collect_run()
    sizes = [len(f.text.encode()) for f in client.transcript.frames if f.direction == "recv" and f.text]
    assert max(sizes) <= limit and len([e for e in run if e["type"] == "text_delta"]) > 2


CHECKS: dict[str, Check] = {
    "max_message_bytes": max_message_bytes,
    "heartbeat_interval_ms": heartbeat_interval_ms,
    "idle_timeout_ms": idle_timeout_ms,
    "rate_limit": rate_limit,
    "replay_window": replay_window,
    "session_ttl_ms": session_ttl_ms,
    "max_connections": max_connections,
    "max_event_bytes": max_event_bytes,
}


async def test_every_announced_limit_has_a_check(limited: ServerProcess):
    async with await AspClient.open(limited.url, token=limited.token("lim-announce")) as client:
        announced = (await client.expect("session"))["limits"]
    assert set(announced) == set(CHECKS)


@pytest.mark.parametrize("member", sorted(CHECKS))
async def test_the_announced_limit_is_the_enforced_one(limited: ServerProcess, connect, member: str):
    client = await connect(limited, user=f"lim-read-{member}")
    limits = (await client.expect("session"))["limits"]
    await client.close()
    await CHECKS[member](limited, connect, limits)
