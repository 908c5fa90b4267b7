"""Connection limit (exact under concurrency), duplicate closure, frame size and rate limits."""

from __future__ import annotations

import asyncio
import json

from conformance.wire import AspClient, Closed
from tests.support.server import ServerProcess


async def _try_connect(server: ServerProcess, user: str) -> tuple[str, AspClient]:
    client = await AspClient.open(server.url, token=server.token(user))
    try:
        event = await client.recv(5)
    except Closed:
        return f"closed:{client.close_code}", client
    return event["type"], client


async def test_exactly_n_of_n_plus_k_concurrent_connects_are_admitted_every_time(make_server):
    server = make_server(max_connections=5)
    for attempt in range(3):
        outcomes = await asyncio.gather(*[_try_connect(server, f"crowd-{attempt}-{i}") for i in range(12)])
        kinds = [kind for kind, _ in outcomes]
        assert kinds.count("session") == 5, kinds
        assert kinds.count("closed:1013") == 7, kinds
        for kind, client in outcomes:
            if kind == "session":
                assert client.violations == []
            else:
                assert client.events == []
            await client.close()
        await asyncio.sleep(0.3)  # the server releases the slots as the closes arrive


async def test_a_second_connection_of_a_user_closes_the_first_with_4002(server: ServerProcess, connect):
    first = await connect(server, user="dup-a")
    await first.expect("session")
    second = await connect(server, user="dup-a")
    await second.expect("session")
    assert await first.wait_closed(5) == 4002
    await second.send({"type": "ping", "id": "still-here"})
    assert (await second.expect("pong"))["id"] == "still-here"


async def test_connections_of_different_users_do_not_close_each_other(server: ServerProcess, connect):
    alice = await connect(server, user="dup-b1")
    bob = await connect(server, user="dup-b2")
    for client in (alice, bob):
        await client.expect("session")
        await client.send({"type": "ping", "id": "p"})
        await client.expect("pong")
    assert alice.close_code is None and bob.close_code is None


def _ping_of_size(size: int) -> str:
    frame = json.dumps({"type": "ping", "id": "p", "x-pad": ""})
    return json.dumps({"type": "ping", "id": "p", "x-pad": "a" * (size - len(frame))})


async def test_a_frame_of_exactly_max_bytes_is_accepted_and_one_byte_more_closes_1009(
    server: ServerProcess, connect
):
    client = await connect(server, user="size-a")
    limit = (await client.expect("session"))["limits"]["max_message_bytes"]
    frame = _ping_of_size(limit)
    assert len(frame.encode()) == limit
    await client.send(frame)
    assert (await client.expect("pong"))["id"] == "p"
    await client.send(_ping_of_size(limit + 1))
    assert await client.wait_closed(5) == 1009


async def test_messages_over_the_rate_limit_get_rate_limited_and_the_connection_stays(make_server, connect):
    server = make_server(rate_limit_messages=3, rate_limit_window_ms=60000)
    client = await connect(server, user="rate-a", conversation_id="new")
    await client.expect("session")
    for number in range(3):
        await client.send({"type": "message", "id": f"m{number}", "content": "asp-fixture:text 2"})
        await client.collect_run()
    await client.send({"type": "message", "id": "m-over", "content": "asp-fixture:text 2"})
    error = await client.expect("error")
    assert error["code"] == "rate_limited" and error["message_id"] == "m-over"
    assert 0 < error["retry_after_ms"] <= 60000 and error["retryable"] is True
    await client.send({"type": "ping", "id": "alive"})
    assert (await client.expect("pong"))["id"] == "alive"
    assert not any(e["type"] == "run_started" and e["message_id"] == "m-over" for e in client.events)
