"""Resume: the missed events come back with their seq, live events follow; refusals are resume_failed."""

from __future__ import annotations

import asyncio
import contextlib
import time

from websockets.exceptions import ConnectionClosed

from conformance.context import text_of
from conformance.wire import AspClient, Closed
from spec.fixtures import fixture_text
from tests.support.held_switch import holding_the_switch
from tests.support.server import ServerProcess
from tests.support.services import fresh_database

EXPECTED = fixture_text(40)


async def test_resume_replays_missed_events_then_continues_live(server: ServerProcess, connect):
    first = await connect(server, user="res-a", conversation_id="new")
    session = await first.expect("session")
    await first.send({"type": "message", "content": "asp-fixture:slow 40 25"})
    await first.expect("run_started")
    for _ in range(5):
        await first.expect("text_delta")
    last_seq = first.events[-1]["seq"]
    seen_text = text_of(first.events)
    first.abort()
    await asyncio.sleep(0.2)  # missed events pile up in the session

    second = await connect(server, user="res-a", conversation_id=session["conversation_id"])
    await second.expect("session")
    await second.send({"type": "resume", "session_id": session["session_id"], "last_seq": last_seq})
    resumed = await second.expect("resumed")
    assert resumed["session_id"] == session["session_id"] and resumed["replay_from"] == last_seq + 1
    assert resumed["replay_count"] >= 1
    replayed = []
    while True:
        event = await second.recv()
        replayed.append(event)
        if event["type"] == "complete":
            break
    assert [e["seq"] for e in replayed] == list(range(last_seq + 1, last_seq + 1 + len(replayed)))
    assert seen_text + text_of(replayed) == EXPECTED
    await second.send({"type": "ping", "id": "after"})
    assert (await second.expect("pong"))["seq"] == replayed[-1]["seq"] + 1


async def test_resume_of_another_users_session_fails(server: ServerProcess, connect):
    owner = await connect(server, user="res-owner")
    session = await owner.expect("session")
    intruder = await connect(server, user="res-intruder")
    await intruder.expect("session")
    await intruder.send({"type": "resume", "id": "r1", "session_id": session["session_id"], "last_seq": 0})
    error = await intruder.expect("error")
    assert (error["code"], error["message_id"]) == ("resume_failed", "r1")
    await intruder.send({"type": "ping"})
    assert (await intruder.expect("pong"))["seq"] == error["seq"] + 1


async def test_resume_of_an_unknown_session_or_after_a_message_fails(server: ServerProcess, connect):
    client = await connect(server, user="res-b", conversation_id="new")
    await client.expect("session")
    await client.send({"type": "resume", "session_id": "ses_unknown", "last_seq": 3})
    assert (await client.expect("error"))["code"] == "resume_failed"
    await client.send({"type": "message", "content": "asp-fixture:text 1"})
    await client.collect_run()
    other = await connect(server, user="res-b2")
    other_session = await other.expect("session")
    await client.send({"type": "resume", "session_id": other_session["session_id"], "last_seq": 1})
    assert (await client.expect("error"))["code"] == "resume_failed"


async def test_resume_beyond_the_replay_window_fails(make_server, connect):
    window, last_seq = 5, 2
    server = make_server(replay_window=window)
    first = await connect(server, user="res-c", conversation_id="new")
    session = await first.expect("session")
    await first.send({"type": "message", "content": "asp-fixture:slow 60 10"})
    await first.expect("run_started")
    # The server sequenced (and this client read) events well past last_seq + window: the events
    # after last_seq are no longer kept, however slowly the run went.
    await first.expect(lambda e: e["seq"] > last_seq + 2 * window, timeout=30)
    first.abort()
    second = await connect(server, user="res-c")
    await second.expect("session")
    await second.send({"type": "resume", "session_id": session["session_id"], "last_seq": last_seq})
    assert (await second.expect("error"))["code"] == "resume_failed"


async def _drop_mid_run(connect, server: ServerProcess, user: str, prompt: str) -> tuple[dict, int, str]:
    """A run started on `server`, its connection dropped after the first delta: (session, last seq, text)."""
    first = await connect(server, user=user, conversation_id="new")
    session = await first.expect("session")
    await first.send({"type": "message", "content": prompt})
    await first.expect("run_started")
    await first.expect("text_delta")
    last_seq, seen = first.events[-1]["seq"], text_of(first.events)
    first.abort()
    return session, last_seq, seen


async def test_a_resume_keeps_its_replay_while_the_switch_waits_and_the_run_goes_on(make_server, connect):
    """The resume is decided on the replay buffer, then the switch awaits (here the conversation's
    bind, held up by a row lock this test holds) while the run goes on: every event the decision
    found kept must still be replayed, never `resumed` and then 4004 (fell out of the replay window)."""
    window, tokens, pace_ms = 5, 16, 400  # the resume is checked well within 5 x 400 ms of the abort
    with fresh_database() as url:
        server = make_server(database_url=url, replay_window=window)
        session, last_seq, seen_text = await _drop_mid_run(
            connect, server, "res-pin", f"asp-fixture:slow {tokens} {pace_ms}"
        )
        second = await connect(server, user="res-pin", conversation_id=session["conversation_id"])
        await second.expect("session")
        async with holding_the_switch(url, session["conversation_id"]) as held:
            await second.send({"type": "resume", "session_id": session["session_id"], "last_seq": last_seq})
            # The resume's bind waits on the lock, and the switch with it, until the run has streamed
            # everything (its exchange's insert waits on the lock too): many more than `window` events
            # after last_seq were produced while the switch waited.
            await held.until_the_bind_and_the_insert_wait()
        resumed = await second.expect("resumed", timeout=30)
        assert resumed["replay_from"] == last_seq + 1
        replayed = []
        while not replayed or replayed[-1]["type"] != "complete":
            replayed.append(await second.recv(timeout=30))
        assert [e["seq"] for e in replayed] == list(range(last_seq + 1, last_seq + 1 + len(replayed)))
        assert seen_text + text_of(replayed) == fixture_text(tokens)
        assert second.close_code is None


async def test_a_resume_whose_switch_fails_releases_its_pin(make_server, connect):
    """The resume's bind fails (its database connection is ended while it waits on a row lock):
    the pin it took is released, and the session goes on sequencing its run as if never resumed.
    A pin that outlived it would hold the run's events back: a later resume from the same last_seq
    would be accepted, then stall."""
    window, tokens = 5, 16
    with fresh_database() as url:
        server = make_server(database_url=url, replay_window=window)
        session, last_seq, _ = await _drop_mid_run(
            connect, server, "res-fail", f"asp-fixture:slow {tokens} 200"
        )
        resume = {"type": "resume", "session_id": session["session_id"], "last_seq": last_seq}
        # Not judged by the oracle: the server's failure closes this connection as it may.
        second = await AspClient.open(
            server.url, token=server.token("res-fail"), conversation_id=session["conversation_id"]
        )
        await second.expect("session")
        try:
            async with holding_the_switch(url, session["conversation_id"]) as held:
                await second.send(resume)
                deadline = time.monotonic() + 60
                ended = 0
                while not ended:
                    assert time.monotonic() < deadline, "the resume's bind never waited"
                    await asyncio.sleep(0.05)
                    ended = await held.database.fetchval(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                        " AND query LIKE 'UPDATE asp_conversations%'"
                    )
                await held.release()
                with contextlib.suppress(Closed, ConnectionClosed, TimeoutError):
                    await second.wait_closed(timeout=30)
                while not await held.database.fetchval("SELECT count(*) FROM asp_exchanges"):  # the run ended
                    assert time.monotonic() < deadline, "the run's exchange was never stored"
                    await asyncio.sleep(0.05)
        finally:
            await second.close()
        third = await connect(server, user="res-fail", conversation_id=session["conversation_id"])
        await third.expect("session")
        await third.send(resume)
        answer = await third.expect(lambda e: e["type"] in ("resumed", "error"), timeout=30)
        assert answer["type"] == "error" and answer["code"] == "resume_failed"  # sequenced on: no longer kept
