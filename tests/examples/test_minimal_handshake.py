"""The minimal server's handshake and connection limits, over real sockets.

Refusal precedence (ASP-TRN-005), version refusal a browser can see (ASP-VER-006), tokens
(ASP-AUTH-010), the exact connection limit with supersede at the limit (ASP-LIM-007/008), message
size on reassembled fragments (ASP-LIM-010) and invalid UTF-8 (ASP-TRN-004).
"""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from conformance.wire import AspClient
from tests.examples.conftest import MinimalServer, Opener, Starter


async def closed_with(client: AspClient, timeout: float = 5) -> int | None:
    return await client.wait_closed(timeout)


async def test_it_prints_its_url_first_and_stops_cleanly_on_sigterm(make_minimal: Starter):
    server = make_minimal()
    assert server.output[0].startswith("listening on ws://127.0.0.1:") and server.url.endswith("/ws/chat")
    assert server.stop() == 0


async def test_other_paths_are_not_found(minimal: MinimalServer):
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(minimal.url.replace("/ws/chat", "/elsewhere")):
            pass
    assert refused.value.response.status_code == 404


async def test_an_unsupported_version_is_selected_then_closed_4000_without_event(
    minimal: MinimalServer, connect: Opener
):
    client = await connect(minimal, "ver-user", subprotocols=["asp.v99", "asp.v98"])
    assert client.subprotocol == "asp.v99"  # ASP-VER-006: a browser completes the handshake
    assert await closed_with(client) == 4000
    assert client.events == []


async def test_refusals_take_the_code_of_the_first_failing_check(make_minimal: Starter, connect: Opener):
    server = make_minimal(max_connections=1)
    await connect(server, "holder")
    everything_wrong = await connect(server, None, token="garbage", subprotocols=["asp.v99"])
    assert await closed_with(everything_wrong) == 4000  # version, then auth, then capacity
    bad_token_at_capacity = await connect(server, None, token="garbage")
    assert await closed_with(bad_token_at_capacity) == 4001
    over = await connect(server, "newcomer")
    assert await closed_with(over) == 1013 and over.events == []


async def test_the_subprotocol_token_counts_over_a_garbage_query_token(minimal: MinimalServer):
    token = minimal.token("sub-user")
    url = minimal.url + "?token=garbage"
    async with ws_connect(url, subprotocols=["asp.v1", "asp.token." + token]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "asp.v1"
        assert '"type":"session"' in str(await ws.recv())
    async with ws_connect(minimal.url, subprotocols=["asp.token." + token]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol is None  # no asp.v* offered: version 1, nothing selected
        assert '"type":"session"' in str(await ws.recv())


async def test_the_limit_is_exact_both_ways_and_a_superseding_connection_takes_its_slot(
    make_minimal: Starter, connect: Opener
):
    server = make_minimal(max_connections=6)
    clients = await asyncio.gather(*[connect(server, f"user-{n}") for n in range(6)])
    firsts = await asyncio.gather(*[c.expect("session", 5) for c in clients])
    assert len(firsts) == 6  # every connection within the limit is admitted (ASP-LIM-008)
    refused = [await connect(server, None, token="garbage") for _ in range(3)]
    assert [await closed_with(c) for c in refused] == [4001] * 3  # and holds no slot
    again = await connect(server, "user-0")  # at the limit, superseding user-0 (ASP-LIM-007)
    await again.expect("session", 5)
    assert await closed_with(clients[0]) == 4002
    over = await connect(server, "user-6")
    assert await closed_with(over) == 1013
    await clients[1].close()
    await asyncio.sleep(0.2)
    later = await connect(server, "user-7")
    await later.expect("session", 5)


async def test_the_size_limit_counts_the_whole_message_fragments_reassembled(
    make_minimal: Starter, connect: Opener
):
    server = make_minimal(max_message_bytes=1024)
    client = await connect(server, "size-user")
    await client.expect("session", 5)
    exact = '{"type":"ping","id":"exact","x-pad":"' + "a" * (1024 - 39) + '"}'
    assert len(exact) == 1024
    await client.websocket.send([exact[:500], exact[500:]])  # fragmented, exactly the limit: accepted
    assert (await client.expect("pong", 5))["id"] == "exact"
    over = exact.replace('"a', '"aa', 1)
    await client.websocket.send([over[:600], over[600:]])  # each fragment small, the whole 1025
    assert await closed_with(client) == 1009


async def test_invalid_utf8_fails_the_connection_with_1007(minimal: MinimalServer, connect: Opener):
    client = await connect(minimal, "utf8-user")
    await client.expect("session", 5)
    websocket = client.websocket
    async with websocket.send_context():
        websocket.protocol.send_text(b'{"type":"ping","id":"\xc3\x28"}')
    assert await client.wait_closed(5) == 1007  # the client reads in the background: wait through it


async def test_a_newer_connection_supersedes_the_older_with_4002(minimal: MinimalServer, connect: Opener):
    first = await connect(minimal, "dup-user")
    await first.expect("session", 5)
    second = await connect(minimal, "dup-user")
    await second.expect("session", 5)
    assert await closed_with(first) == 4002
    await second.send({"type": "ping", "id": "alive"})
    assert (await second.expect("pong", 5))["id"] == "alive"
