"""Sessions shared through Redis Streams: a resume on the other process (ASP-RES-007), a cancel that
reaches the run on the process that runs it, and a process killed mid-run (issue 13)."""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis

from conformance.context import text_of
from conformance.wire import AspClient
from spec.fixtures import fixture_text
from tests.support.held_switch import holding_the_switch
from tests.support.server import ServerProcess
from tests.support.services import Pair, redis_url


async def _start_then_drop(server: ServerProcess, user: str, prompt: str) -> tuple[dict, int, str]:
    """A run started on `server`, its connection dropped after a few deltas: (session, last seq, text)."""
    client = await AspClient.open(server.url, token=server.token(user), conversation_id="new")
    session = await client.expect("session")
    await client.send({"type": "message", "content": prompt})
    await client.expect("run_started")
    for _ in range(3):
        await client.expect("text_delta")
    last_seq, seen = client.events[-1]["seq"], text_of(client.events)
    client.abort()
    return session, last_seq, seen


async def _resume(server: ServerProcess, user: str, session: dict, last_seq: int) -> AspClient:
    client = await AspClient.open(
        server.url, token=server.token(user), conversation_id=session["conversation_id"]
    )
    await client.expect("session")
    await client.send({"type": "resume", "session_id": session["session_id"], "last_seq": last_seq})
    resumed = await client.expect("resumed", timeout=30)  # a bound, generous on a busy host
    assert resumed["replay_from"] == last_seq + 1
    return client


async def _until_complete(client: AspClient) -> list[dict]:
    received = []
    while True:
        event = await client.recv(15)
        if event["type"] == "history":  # of the connection's own new session, before `resumed`
            continue
        received.append(event)
        if event["type"] == "complete":
            return received


async def test_a_run_on_one_process_resumes_on_the_other(pair: Pair) -> None:
    """Replay, live tail, complete; the text is the undisturbed run's, seq has no gap or duplicate;
    afterwards the session lives on the second process (a pong and a new run there)."""
    a, b = pair()
    session, last_seq, seen = await _start_then_drop(a, "mover", "asp-fixture:slow 40 20")
    second = await _resume(b, "mover", session, last_seq)
    received = await _until_complete(second)
    assert [e["seq"] for e in received] == list(range(last_seq + 1, last_seq + 1 + len(received)))
    assert seen + text_of(received) == fixture_text(40)
    assert received[-1]["finish_reason"] == "stop"
    await second.send({"type": "ping", "id": "after"})
    assert (await second.expect("pong"))["seq"] == received[-1]["seq"] + 1
    await second.send({"type": "message", "content": "asp-fixture:text 3"})
    run = await second.collect_run()
    assert text_of(run) == fixture_text(3) and run[-1]["finish_reason"] == "stop"
    assert second.violations == []
    await second.close()


async def test_a_cancel_on_the_resumed_connection_stops_the_run_on_the_first(pair: Pair) -> None:
    """The cancel, sent on the process that resumed the session, reaches the run on the process
    that runs it: the run completes `cancelled`, short of its text. The run is paced to last 100 s
    (its schedule is by the clock: a busy machine does not stretch it), far longer than the drop,
    the resume and the cancel take on a loaded host: 400 tokens (8 s) once ended on their own first."""
    tokens = 5000
    a, b = pair()
    session, last_seq, _ = await _start_then_drop(a, "stopper", f"asp-fixture:slow {tokens} 20")
    second = await _resume(b, "stopper", session, last_seq)
    delta = await second.expect("text_delta", timeout=30)  # replayed or live
    await second.send({"type": "cancel", "id": "c1", "run_id": delta["run_id"]})
    received = await _until_complete(second)
    assert received[-1]["finish_reason"] == "cancelled"
    assert len(text_of(received)) < len(fixture_text(tokens))
    await second.close()


async def test_a_process_killed_mid_run_ends_the_run_for_the_resumed_client(pair: Pair) -> None:
    """SIGKILL the process running the run: the client resumed on the other gets the replay, then
    error internal_error and complete (error); the history holds what was streamed."""
    a, b = pair(lease_ttl_ms=1500)
    session, last_seq, seen = await _start_then_drop(a, "orphan", "asp-fixture:slow 400 20")
    # Killed once its writes reached what the client saw (the client saw nothing A never wrote;
    # that case is the crafted one below), a few events later at most.
    redis = aioredis.Redis.from_url(redis_url(), decode_responses=True)
    stream = f"{pair.prefix}:ses:{session['session_id']}"  # type: ignore[attr-defined]
    for _ in range(200):
        newest = await redis.xrevrange(stream, count=1)
        if newest and int(newest[0][0].split("-")[0]) >= last_seq:
            break
        await asyncio.sleep(0.05)
    await redis.aclose()
    a.process.kill()  # type: ignore[union-attr]
    a.process.wait(5)  # type: ignore[union-attr]
    second = await _resume(b, "orphan", session, last_seq)
    received = await _until_complete(second)
    error = next(e for e in received if e["type"] == "error")
    assert error["code"] == "internal_error" and received[-1]["finish_reason"] == "error"
    assert [e["seq"] for e in received] == list(range(last_seq + 1, last_seq + 1 + len(received)))
    streamed = seen + text_of(received)
    assert streamed and fixture_text(400).startswith(streamed)
    assert second.violations == []
    await second.close()
    later = await AspClient.open(b.url, token=b.token("orphan"), conversation_id=session["conversation_id"])
    history = await later.expect("history")
    assert streamed in str(history["messages"])
    await later.close()


async def test_a_session_whose_process_died_is_taken_over_even_past_what_it_wrote(pair: Pair) -> None:
    """The process holding a session died with a run active (its lease is gone): a resume replays
    what it wrote, then ends the run with error + complete; a client that saw events the dead
    process never wrote (last_seq beyond the stream) gets the ending after its last_seq, no seq
    reused; the history holds the prompt and the streamed text (ASP-RES-007)."""
    a, _ = pair()
    prefix = pair.prefix  # type: ignore[attr-defined]
    owner = await AspClient.open(a.url, token=a.token("heir"), conversation_id="new")
    conversation_id = (await owner.expect("session"))["conversation_id"]
    await owner.close()
    redis = aioredis.Redis.from_url(redis_url(), decode_responses=True)
    for session_id, last_seq in (("ses_deadhomeA0123456789abcd", 1), ("ses_deadhomeB0123456789abcd", 5)):
        run_id, message_id = f"run_{session_id[-6:]}", f"msg_{session_id[-6:]}"
        await redis.hset(
            f"{prefix}:ses:{session_id}:meta",
            mapping={
                "user_id": "heir",
                "conversation_id": conversation_id,
                "home": "dead-host-1-0000",
                "run_id": run_id,
                "message_id": message_id,
                "prompt": "say hello",
            },
        )
        written = [
            {
                "type": "run_started",
                "run_id": run_id,
                "message_id": message_id,
                "conversation_id": conversation_id,
            },
            {"type": "text_delta", "run_id": run_id, "delta": "Hel"},
            {"type": "text_delta", "run_id": run_id, "delta": "lo"},
        ]
        for seq, event in enumerate(written, start=1):
            await redis.xadd(
                f"{prefix}:ses:{session_id}", {"e": json.dumps({**event, "seq": seq})}, id=f"{seq}-0"
            )
        client = await _resume(
            a, "heir", {"session_id": session_id, "conversation_id": conversation_id}, last_seq
        )
        received = await _until_complete(client)
        assert [e["seq"] for e in received] == list(range(last_seq + 1, last_seq + 1 + len(received)))
        error = next(e for e in received if e["type"] == "error")
        assert (error["code"], error["run_id"], error["message_id"]) == ("internal_error", run_id, message_id)
        assert received[-1]["finish_reason"] == "error"
        await client.send({"type": "message", "content": "asp-fixture:text 2"})  # the session goes on here
        assert (await client.collect_run())[-1]["finish_reason"] == "stop"
        assert client.violations == []
        await client.close()
    await redis.aclose()
    later = await AspClient.open(a.url, token=a.token("heir"), conversation_id=conversation_id)
    history = str((await later.expect("history"))["messages"])
    assert history.count("say hello") == 2 and history.count("Hello") == 2
    await later.close()


async def test_a_resume_on_the_other_process_keeps_its_replay_while_the_switch_waits(pair: Pair) -> None:
    """As tests/server/test_resume.py's test of the same name, across processes: the resume is
    decided on the Redis Stream, trimmed to replay_window by the home while the switch waits (the
    bind held on a row lock until the home's run streamed everything); never resumed then 4004."""
    window, tokens = 5, 16
    a, b = pair(replay_window=window)
    session, last_seq, seen = await _start_then_drop(a, "pin-mover", f"asp-fixture:slow {tokens} 400")
    second = await AspClient.open(
        b.url, token=b.token("pin-mover"), conversation_id=session["conversation_id"]
    )
    await second.expect("session")
    async with holding_the_switch(b.settings["ASP_DATABASE_URL"], session["conversation_id"]) as held:
        await second.send({"type": "resume", "session_id": session["session_id"], "last_seq": last_seq})
        await held.until_the_bind_and_the_insert_wait()
    resumed = await second.expect("resumed", timeout=30)
    assert resumed["replay_from"] == last_seq + 1
    received = await _until_complete(second)
    assert [e["seq"] for e in received] == list(range(last_seq + 1, last_seq + 1 + len(received)))
    assert seen + text_of(received) == fixture_text(tokens)
    assert second.violations == [] and second.close_code is None
    await second.close()


async def test_a_resume_on_the_other_process_of_a_fast_run_gets_every_event(pair: Pair) -> None:
    """A small replay_window: the mirror relays the home's stream in batches (the replay at once,
    then what each read finds); what its connection has not been sent yet is never evicted, so a
    client that keeps up gets every event, no gap, to `complete`, and is never closed 4004. Paced so
    that the resume is still within the window when it is decided (5 x 100 ms after the abort)."""
    tokens = 100
    a, b = pair(replay_window=5)
    session, last_seq, seen = await _start_then_drop(a, "fast-mover", f"asp-fixture:slow {tokens} 100")
    second = await _resume(b, "fast-mover", session, last_seq)
    received = await _until_complete(second)
    assert [e["seq"] for e in received] == list(range(last_seq + 1, last_seq + 1 + len(received)))
    assert seen + text_of(received) == fixture_text(tokens)
    assert received[-1]["finish_reason"] == "stop"
    assert second.violations == [] and second.close_code is None
    await second.close()


async def test_a_refused_resume_on_the_other_process_releases_the_follow_key_at_once(pair: Pair) -> None:
    """A resume of a session another process holds sets the follower's position (the follow key)
    while `find` reads the stream; refused (another user's session, last_seq beyond its last event,
    events no longer kept: resume_failed), the key is gone by the time the refusal arrives, not
    FOLLOW_TTL_MS (5 s) later, so it holds the home's trim for nobody."""
    a, b = pair(replay_window=5)
    owner = await AspClient.open(a.url, token=a.token("keeper"), conversation_id="new")
    session = await owner.expect("session")
    for index in range(8):  # more events than the window: the oldest are no longer kept
        await owner.send({"type": "ping", "id": f"p{index}"})
        last_seq = (await owner.expect("pong"))["seq"]
    await owner.close()
    redis = aioredis.Redis.from_url(redis_url(), decode_responses=True)
    stream = f"{pair.prefix}:ses:{session['session_id']}"  # type: ignore[attr-defined]
    for _ in range(250):  # the home's writes reached the client's last event (5 s at most)
        newest = await redis.xrevrange(stream, count=1)
        if newest and int(newest[0][0].split("-")[0]) >= last_seq:
            break
        await asyncio.sleep(0.02)
    refusals = [("intruder", 0), ("keeper", last_seq + 50), ("keeper", 0)]
    try:
        for user, resume_from in refusals:
            client = await AspClient.open(b.url, token=b.token(user), conversation_id="new")
            await client.expect("session")
            request = {"type": "resume", "session_id": session["session_id"], "last_seq": resume_from}
            await client.send(request)
            failed = await client.expect("error", timeout=15)
            assert failed["code"] == "resume_failed", failed
            assert await redis.exists(f"{stream}:follow") == 0, (user, resume_from)
            await client.close()
    finally:
        await redis.aclose()
