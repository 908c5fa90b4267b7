"""Memory per session and per connection is bounded in bytes, not only in events (ASP-LIM-005,
ASP-RES-003): a stalled reader of large events is closed 4004 at max_pending_bytes, and the
replay window a session announces is as many events of max_event_bytes as max_replay_bytes
holds, kept exactly."""

from __future__ import annotations

import asyncio

from spec.registry import close_code
from tests.server.test_slow_consumer import read_all, stalled_reader

EVENT = 65_536


async def test_a_stalled_reader_of_large_events_is_closed_4004_at_the_byte_bound(make_server):
    """Far fewer events than max_pending_events and a send timeout longer than the test: only the
    byte bound can close it (the defect buffered 10,000 events of 64 KiB, about 650 MB)."""
    server = make_server(
        max_pending_bytes=4 * EVENT,
        max_pending_events=10_000,
        send_timeout_ms=120_000,
        heartbeat_interval_ms=120_000,
        token_delay_ms=0,
    )
    sleeper = await stalled_reader(
        server, "byte-bound", '{"type": "message", "content": "asp-fixture:bulk 400 65536"}'
    )
    assert await asyncio.get_running_loop().run_in_executor(
        None, server.wait_for_log, f"closing slow consumer: over {4 * EVENT} pending bytes", 30
    )
    received, oracle, _ = await read_all(sleeper, 10)
    assert sleeper.close_code == close_code("slow_consumer")
    oracle.feed_close(sleeper.close_code)
    assert oracle.violations == []
    assert received < 400 * EVENT


async def test_the_announced_replay_window_holds_max_replay_bytes_of_the_largest_events(make_server, connect):
    window = 6
    budget = window * EVENT + EVENT // 2
    server = make_server(max_event_bytes=EVENT, max_replay_bytes=budget, token_delay_ms=0)
    first = await connect(server, user="replay-bytes", conversation_id="new")
    session = await first.expect("session")
    assert session["limits"]["replay_window"] == window  # not the 1,000 of the setting
    await first.send({"type": "message", "content": "asp-fixture:bulk 30 65536"})
    run = await first.collect_run()
    last = run[-1]["seq"]
    first.abort()

    second = await connect(server, user="replay-bytes", conversation_id=session["conversation_id"])
    await second.expect("session")
    await second.expect("history")
    beyond = {"type": "resume", "session_id": session["session_id"], "last_seq": last - window - 1}
    await second.send({**beyond, "id": "one-too-many"})
    assert (await second.expect("error"))["code"] == "resume_failed"
    await second.send({"type": "resume", "session_id": session["session_id"], "last_seq": last - window})
    assert (await second.expect("resumed"))["replay_count"] == window
    replayed = [await second.recv() for _ in range(window)]
    assert [event["seq"] for event in replayed] == list(range(last - window + 1, last + 1))


async def test_a_history_over_the_byte_bound_is_sent_not_taken_for_a_slow_consumer(make_server, connect):
    """The outbox counts an event as what leaves (fitted to max_event_bytes), not its stored size."""
    server = make_server(max_event_bytes=EVENT, max_pending_bytes=2 * EVENT, token_delay_ms=0)
    first = await connect(server, user="big-history", conversation_id="new")
    session = await first.expect("session")
    await first.send({"type": "message", "content": "asp-fixture:bulk 8 65536"})  # 512 KiB stored
    await first.collect_run()
    await first.close()
    second = await connect(server, user="big-history", conversation_id=session["conversation_id"])
    await second.expect("session")
    history = await second.expect("history")
    assert history["messages"] and history["messages"][-1].get("truncated") is True
    await second.send({"type": "ping", "id": "still-open"})
    assert (await second.expect("pong"))["id"] == "still-open"
