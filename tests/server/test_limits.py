"""Connection limit (exact under concurrency), duplicate closure, frame size and rate limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed

from conformance.wire import AspClient, Closed
from tests.server.test_slow_consumer import stalled_reader
from tests.support.server import ServerProcess

Connect = Callable[..., Any]  # the `connect` fixture: opens an AspClient


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


async def test_the_older_connection_gets_4002_when_it_sends_a_frame_while_its_close_waits(
    make_server, connect
):
    """ASP-DUP-001. The 4002 close first waits (1 s at most) for the session's pending events, here
    deltas held in a 5 s coalescing window. A frame the older connection sent meanwhile ended its
    receive loop, the app returned before the close frame was written and the transport was
    dropped: 1006 every time, where the close code must be 4002."""
    server = make_server(coalesce_ms=5000, idle_timeout_ms=60000)  # a window of at most a tenth of it
    for attempt in range(3):
        user = f"dup-late-{attempt}"
        first = await connect(server, user=user, conversation_id="new")
        await first.expect("session")
        await first.send({"type": "message", "id": "m", "content": "asp-fixture:slow 200 20"})
        await first.expect("run_started")
        await asyncio.sleep(0.3)  # deltas gather in the coalescing window: the close waits for them
        second = await connect(server, user=user)
        await second.expect("session")
        assert first.close_code is None, "the close came before the frame: nothing was tested"
        await first.send({"type": "ping", "id": "during-the-close"})
        assert await first.wait_closed(5) == 4002, f"attempt {attempt}: {first.close_reason!r}"
        await second.close()


async def _stored_user_turns(
    server: ServerProcess, connect: Connect, user: str, conversation: str
) -> list[str]:
    """The message ids of the user turns stored in `conversation`, as a new connection's history
    shows them (no history event at all: nothing stored, ASP-SES-005)."""
    reader = await connect(server, user=user, conversation_id=conversation)
    await reader.expect("session")
    assert await reader.sync(), "no pong to the reader's ping"
    shown = [e for e in reader.events if e["type"] == "history"]
    await reader.close()
    return [m["message_id"] for e in shown for m in e["messages"] if m["role"] == "user"]


async def _send_after(delay: float, client: AspClient, message_id: str) -> None:
    """A short run's message after `delay` seconds; nothing when the connection closed meanwhile."""
    await asyncio.sleep(delay)
    with contextlib.suppress(ConnectionClosed):
        await client.send({"type": "message", "id": message_id, "content": "asp-fixture:text 3"})


async def test_a_message_sent_while_the_superseded_connections_close_waits_starts_no_run(
    make_server: Callable[..., ServerProcess], connect: Connect
) -> None:
    """ASP-DUP-001. The older connection's run has ended but its output still waits for the client,
    which reads nothing (a full receive buffer), so the 4002 close first waits for it (1 s at most).
    A message the older connection sends then reaches the server while that connection is already
    superseded, with no run active: it must start none (nothing stored of it, no run_started), and
    the connection still ends with 4002."""
    server = make_server(
        send_timeout_ms=10000, max_pending_bytes=64 * 1024 * 1024, heartbeat_interval_ms=60000
    )
    for attempt in range(2):
        user = f"dup-backlog-{attempt}"
        bulk = json.dumps({"type": "message", "id": "bulk", "content": "asp-fixture:bulk 1000 16000"})
        older = await stalled_reader(server, user, bulk)  # 16 MB of deltas it does not read yet
        conversation = json.loads(await asyncio.wait_for(older.recv(), 10))["conversation_id"]
        await asyncio.sleep(0.5)  # the bulk run (never paced) ends; its output waits for the reader
        newer = await connect(server, user=user, conversation_id=conversation)
        await newer.expect("session")
        late = f"late-{attempt}"
        await older.send(json.dumps({"type": "message", "id": late, "content": "asp-fixture:text 3"}))
        frames: list[dict[str, Any]] = []
        with contextlib.suppress(ConnectionClosed):
            while True:
                frames.append(json.loads(await asyncio.wait_for(older.recv(), 15)))
        assert older.close_code == 4002, f"attempt {attempt}: {older.close_code} {older.close_reason!r}"
        answered = [e for e in frames if e.get("message_id") == late]
        assert all(e["type"] == "error" for e in answered), f"attempt {attempt}: answered with {answered}"
        assert await newer.sync(), f"attempt {attempt}: the newer connection stopped answering"
        foreign = [e for e in newer.events if e["type"] in ("run_started", "text_delta", "complete")]
        assert foreign == [], f"attempt {attempt}: the newer connection saw a run it did not start: {foreign}"
        await newer.close()
        await asyncio.sleep(0.3)  # a run started from the late message (3 tokens) would be stored by now
        stored = await _stored_user_turns(server, connect, user, conversation)
        # (the bulk turn itself is left out of the history event: its 16 MB answer is shortened, ASP-LIM-011)
        assert late not in stored, f"attempt {attempt}: the late message was stored: {stored}"


async def test_a_message_racing_the_newer_connection_is_run_only_when_its_connection_is_told(
    server: ServerProcess, connect: Connect
) -> None:
    """ASP-DUP-001, ASP-DUP-003. The older connection sends a message while the newer one connects,
    0 to 32 ms into its handshake: one the server took before the newer connection superseded the
    older one runs, is announced there (run_started before the 4002) and is stored; one it took
    after starts nothing. A run started on a superseded connection would be stored unannounced."""
    for attempt, delay in enumerate([0, 0, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032]):
        user = f"dup-race-{attempt}"
        older = await connect(server, user=user, conversation_id="new")
        conversation = (await older.expect("session"))["conversation_id"]
        late = f"race-{attempt}"
        sender = asyncio.create_task(_send_after(delay, older, late))
        newer = await connect(server, user=user, conversation_id=conversation)
        await newer.expect("session")
        await sender
        assert await older.wait_closed(5) == 4002, f"attempt {attempt}: {older.close_reason!r}"
        told = any(e["type"] == "run_started" and e["message_id"] == late for e in older.events)
        await newer.close()
        if not told:
            await asyncio.sleep(0.3)  # a run started unannounced would be stored by now (3 tokens)
        deadline = time.monotonic() + 10
        stored = await _stored_user_turns(server, connect, user, conversation)
        while told and late not in stored and time.monotonic() < deadline:  # the run goes on alone
            await asyncio.sleep(0.2)
            stored = await _stored_user_turns(server, connect, user, conversation)
        assert (late in stored) == told, (
            f"attempt {attempt}: run_started on the older connection: {told}; stored user turns: {stored}"
        )


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


async def test_defect_4_the_announced_rate_window_is_the_enforced_one(make_server, connect):
    """3 per 400 ms announced: a 4th message 500 ms after the 3rd is served; one sent within the
    window is refused with a retry_after_ms after which a message is served (ASP-LIM-009)."""
    server = make_server(rate_limit_messages=3, rate_limit_window_ms=400)
    client = await connect(server, user="rate-window", conversation_id="new")
    rate = (await client.expect("session"))["limits"]["rate_limit"]
    assert rate == {"messages": 3, "window_ms": 400}
    for number in range(3):
        await client.send({"type": "message", "id": f"w{number}", "content": "asp-fixture:text 1"})
        await client.collect_run()
    await client.send({"type": "message", "id": "w-over", "content": "asp-fixture:text 1"})
    refused = await client.expect(lambda e: e.get("message_id") == "w-over")
    if refused["type"] == "error":  # the three runs were quick: still inside the window
        assert refused["code"] == "rate_limited" and 0 < refused["retry_after_ms"] <= 400
        await asyncio.sleep(refused["retry_after_ms"] / 1000)
        await client.send({"type": "message", "id": "w-retry", "content": "asp-fixture:text 1"})
        assert (await client.expect(lambda e: e.get("message_id") == "w-retry"))["type"] == "run_started"
        await client.expect("complete")
    else:
        await client.expect("complete")
    await asyncio.sleep(0.5)  # more than window_ms after the last run started
    await client.send({"type": "message", "id": "w-late", "content": "asp-fixture:text 1"})
    assert (await client.expect(lambda e: e.get("message_id") == "w-late"))["type"] == "run_started"


async def test_refused_messages_do_not_count_toward_the_rate(make_server, connect):
    server = make_server(rate_limit_messages=2, rate_limit_window_ms=60000)
    client = await connect(server, user="rate-refused", conversation_id="new")
    await client.expect("session")
    await client.send({"type": "message", "id": "r1", "content": "asp-fixture:slow 5 100"})
    await client.expect("run_started")
    for number in range(5):  # run_in_progress: refused, not counted
        await client.send({"type": "message", "id": f"busy{number}", "content": "x"})
        assert (await client.expect("error"))["code"] == "run_in_progress"
    await client.expect("complete")
    await client.send({"type": "message", "id": "r2", "content": "asp-fixture:text 1"})
    assert (await client.expect(lambda e: e.get("message_id") == "r2"))["type"] == "run_started"
    await client.expect("complete")
    for number in range(3):  # rate_limited: refused, not counted, so the retry time never grows
        await client.send({"type": "message", "id": f"over{number}", "content": "x"})
        error = await client.expect("error")
        assert error["code"] == "rate_limited" and error["retry_after_ms"] <= 60000


async def test_the_rate_limit_is_per_user_across_connections(make_server, connect):
    server = make_server(rate_limit_messages=1, rate_limit_window_ms=60000)
    first = await connect(server, user="rate-user", conversation_id="new")
    await first.expect("session")
    await first.send({"type": "message", "content": "asp-fixture:text 1"})
    await first.collect_run()
    second = await connect(server, user="rate-user")  # supersedes the first
    await second.expect("session")
    await second.send({"type": "message", "id": "again", "content": "asp-fixture:text 1"})
    assert (await second.expect("error"))["code"] == "rate_limited"
    other = await connect(server, user="rate-other", conversation_id="new")
    await other.expect("session")
    await other.send({"type": "message", "content": "asp-fixture:text 1"})
    await other.collect_run()


async def test_a_superseding_connection_is_admitted_at_the_limit_and_takes_the_slot(make_server):
    """ASP-LIM-007; and refused handshakes hold no slot (ASP-LIM-008)."""
    server = make_server(max_connections=2)
    holders = [await AspClient.open(server.url, token=server.token(f"slot-{i}")) for i in range(2)]
    for holder in holders:
        assert (await holder.recv(5))["type"] == "session"
    for _ in range(3):  # bad tokens and bad versions at the limit: refused for what they are
        bad = await AspClient.open(server.url, token="not-a-token")
        assert await bad.wait_closed(5) == 4001
        wrong = await AspClient.open(server.url, token=server.token("slot-x"), subprotocols=["asp.v9"])
        assert await wrong.wait_closed(5) == 4000
    stranger = await AspClient.open(server.url, token=server.token("slot-stranger"))
    assert await stranger.wait_closed(5) == 1013
    successor = await AspClient.open(server.url, token=server.token("slot-0"))
    assert (await successor.recv(5))["type"] == "session"
    assert await holders[0].wait_closed(5) == 4002
    again = await AspClient.open(server.url, token=server.token("slot-stranger"))
    assert await again.wait_closed(5) == 1013  # still full: the successor holds the slot
    await holders[1].close()  # the closing handshake is done: its slot is free (ASP-LIM-008)
    late = await AspClient.open(server.url, token=server.token("slot-late"))
    assert (await late.recv(5))["type"] == "session"
    for client in (successor, late):
        assert client.violations == []
        await client.close()
