"""A resume on the other process from the oldest event the home's Redis Stream still keeps, while the
home streams fast (attack on 98fcace/9880b7f: "never resumed then 4004")."""

from __future__ import annotations

import redis.asyncio as aioredis

from conformance.context import text_of
from conformance.wire import AspClient, Closed
from tests.support.services import Pair, redis_url


async def test_a_resume_from_the_oldest_kept_event_of_a_fast_home_is_replayed_or_refused(pair: Pair) -> None:
    """Each attempt: a run at 5 ms per token on process a, its client gone; the resume on b names the
    event before the stream's oldest entry (read just before it is sent), so the decision may go
    either way. Accepted, it must replay every event to `complete`; refused (resume_failed) is fine.
    Up to 8 attempts, stopping at the first bad one: the race is between two processes' Redis
    round trips, so each attempt shows it only sometimes (6 of 16 on this busy 2-core machine, load 3-10)."""
    a, b = pair(replay_window=5)
    redis = aioredis.Redis.from_url(redis_url(), decode_responses=True)
    bad: list[str] = []
    try:
        for attempt in range(8):
            user = f"edge-{attempt}"
            first = await AspClient.open(a.url, token=a.token(user), conversation_id="new")
            session = await first.expect("session")
            await first.send({"type": "message", "content": "asp-fixture:slow 600 5"})
            await first.expect("run_started")
            await first.expect("text_delta")
            first.abort()
            second = await AspClient.open(
                b.url, token=b.token(user), conversation_id=session["conversation_id"]
            )
            await second.expect("session")
            key = f"{pair.prefix}:ses:{session['session_id']}"  # type: ignore[attr-defined]
            oldest = await redis.xrange(key, count=1)
            edge = int(oldest[0][0].split("-")[0]) - 1
            await second.send({"type": "resume", "session_id": session["session_id"], "last_seq": edge})
            answer = await second.expect(lambda e: e["type"] in ("resumed", "error"), timeout=30)
            if answer["type"] == "resumed":
                received: list[dict] = []
                try:
                    while not received or received[-1]["type"] != "complete":
                        received.append(await second.recv(timeout=30))
                except Closed as closed:
                    bad.append(
                        f"attempt {attempt}: resumed from {edge + 1} ({answer['replay_count']} to replay), "
                        f"then closed {closed.code} {closed.reason!r} after {len(received)} events"
                    )
                else:
                    seqs = [e["seq"] for e in received]
                    assert seqs == list(range(edge + 1, edge + 1 + len(seqs)))
                    assert text_of(received)
            else:
                assert answer["code"] == "resume_failed"
            await second.close()
            if bad:
                break
    finally:
        await redis.aclose()
    assert not bad, (
        bad[0]
        + "\n"
        + "\n".join(
            line for line in b.logs.splitlines() if "replay window" in line or "slow consumer" in line
        )
    )
