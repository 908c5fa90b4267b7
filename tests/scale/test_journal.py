"""The Redis journal of a session (reference_server.redis_sessions): what a resume on another process
replays is the home's stream, so it must hold each event's text exactly as sent, at its seq, trimmed
to exactly the replay window (ASP-RES-001, ASP-RES-003, ASP-RES-007). A real hub on a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from reference_server import redis_sessions
from reference_server.config import Settings
from reference_server.hub import Hub
from reference_server.protocol import events
from tests.support.services import fresh_prefix, redis_url

# Texts a JSON encoding may get wrong: quotes, backslashes, control characters, escapes spelled out,
# characters beyond ASCII and beyond the BMP, a JSON document inside a string.
AWKWARD = [
    "plain",
    'a "quote", a \\ backslash, a / slash',
    "controls \x00 \x01 \x1f \n \r \t \x7f",
    "\\u0000 \\n spelled out",
    "é ß 漢字 😀 \u2028 \u2029 \ufeff",
    '{"type": "complete", "seq": 1}',
    "",
]


class Collecting:
    """A connection that takes every frame at once and keeps it (the texts the client was sent)."""

    def __init__(self) -> None:
        self.cursor = 0
        self.texts: dict[int, str] = {}
        self.close_code: int | None = None

    async def send_text(self, text: str) -> None:
        self.texts[self.cursor + 1] = text

    def send_now(self, text: str) -> bool:
        self.texts[self.cursor + 1] = text
        return True

    async def close(self, code: int, reason: str = "") -> None:
        self.close_code = code


@asynccontextmanager
async def redis_hub(tmp_path: Path, **settings: Any) -> AsyncIterator[tuple[Hub, aioredis.Redis]]:
    """A started hub on a fresh key prefix of the test Redis (or `redis_prefix`), and a client of
    that Redis; every key under the prefix deleted afterwards."""
    settings = {
        "redis_prefix": fresh_prefix(),
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'history.db'}",
        **settings,
    }
    hub = Hub(Settings(redis_url=redis_url(), **settings))
    await hub.start()
    client = aioredis.Redis.from_url(hub.settings.redis_url, decode_responses=True)
    try:
        yield hub, client
    finally:
        await hub.shutdown()
        keys = [key async for key in client.scan_iter(match=f"{hub.settings.redis_prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@asynccontextmanager
async def home_and_other(tmp_path: Path, **settings: Any) -> AsyncIterator[tuple[Hub, Hub, aioredis.Redis]]:
    """Two started hubs on one fresh key prefix of the test Redis, as two processes of one
    deployment (the session's home, and another), each with its own history database; and a
    client of that Redis."""
    prefix = fresh_prefix()
    for name in ("home", "other"):
        (tmp_path / name).mkdir()
    async with (
        redis_hub(tmp_path / "home", redis_prefix=prefix, **settings) as (home, client),
        redis_hub(tmp_path / "other", redis_prefix=prefix, **settings) as (other, _),
    ):
        assert home.shared is not None and other.shared is not None
        yield home, other, client


async def test_the_stream_holds_each_event_as_sent_within_the_replay_window(tmp_path: Path) -> None:
    window = 16
    async with redis_hub(tmp_path, replay_window=window) as (hub, client):
        assert hub.shared is not None and hub.replay_window == window
        session = await hub.open_session("journal-user", "conv_journal")
        sink = Collecting()
        session.attach(sink)
        for round_ in range(3):  # more events than the window: the stream is trimmed
            for index, text in enumerate(AWKWARD):
                session.emit(events.tool_result("run_j", f"call_{round_}_{index}", text, False))
            await session.flush()
            await hub.shared.journals[session.id].flush()
        written = await client.xrange(hub.shared.stream_key(session.id))
        assert len(sink.texts) == 3 * len(AWKWARD) > window
        expected = [
            (f"{seq}-0", {"e": sink.texts[seq]}) for seq in range(session.seq - window + 1, session.seq + 1)
        ]
        assert list(written or []) == expected


async def test_a_carried_session_outlives_its_ttl_in_redis_and_a_left_one_expires(tmp_path: Path) -> None:
    """While a connection carries it, the session's keys are renewed: they still exist a whole TTL
    (2 s here) after they were first seen with one, and their TTL was seen to rise again at least
    twice; once it is left, they expire (ASP-RES-003)."""
    ttl_s = 2.0
    async with redis_hub(tmp_path, session_ttl_ms=int(ttl_s * 1000)) as (hub, client):
        assert hub.shared is not None
        session = await hub.open_session("ttl-user", "conv_ttl")
        sink = Collecting()
        session.attach(sink)
        session.emit(events.pong("carried"))
        await session.flush()
        keys = [hub.shared.stream_key(session.id), hub.shared.meta_key(session.id)]
        deadline = time.monotonic() + 30  # a renewal every quarter TTL: two come within one TTL
        for _ in range(500):
            if (last := await client.pttl(keys[0])) > 0:
                break
            await asyncio.sleep(0.02)
        assert last > 0, "the session's stream never got a TTL"
        # Unrenewed, the keys would be gone by `seen` + TTL: existing past it, they were renewed.
        seen, renewals = time.monotonic(), 0
        while time.monotonic() < seen + ttl_s + 0.25 or renewals < 2:
            assert time.monotonic() < deadline, f"{renewals} renewals in 30 s"
            await asyncio.sleep(0.05)
            now = await client.pttl(keys[0])
            assert now > 0, f"the carried session's stream expired ({now}) after {renewals} renewals"
            renewals += now > last
            last = now
        assert await client.exists(*keys) == 2
        session.detach(sink)
        for _ in range(100):  # gone within the TTL and a renewal interval; 10 s at most
            if not await client.exists(*keys):
                break
            await asyncio.sleep(0.1)
        assert await client.exists(*keys) == 0


async def test_a_turn_larger_than_one_script_call_is_written_whole(tmp_path: Path, monkeypatch: Any) -> None:
    """A writer turn with more entries or journals than one call takes (CALL_ENTRIES, lowered here)
    is split over several calls; every session's stream still gets every event, in order."""
    from reference_server import redis_sessions

    monkeypatch.setattr(redis_sessions, "CALL_ENTRIES", 3)
    async with redis_hub(tmp_path) as (hub, client):
        assert hub.shared is not None
        sessions = [await hub.open_session(f"split-{i}", f"conv_split_{i}") for i in range(5)]
        sinks = [Collecting() for _ in sessions]
        for session, sink in zip(sessions, sinks, strict=True):
            session.attach(sink)
            for index in range(4):
                session.emit(events.pong(f"{session.id}-{index}"))
        for session in sessions:
            await session.flush()
            await hub.shared.journals[session.id].flush()
        for session, sink in zip(sessions, sinks, strict=True):
            written = await client.xrange(hub.shared.stream_key(session.id))
            assert list(written or []) == [
                (f"{seq}-0", {"e": text}) for seq, text in sorted(sink.texts.items())
            ]


async def test_a_resume_elsewhere_replays_what_its_decision_read_though_the_home_trims_at_once(
    tmp_path: Path,
) -> None:
    """A resume of a session another process holds is decided on its stream (`find` reads the oldest
    entry kept), then mirrored (the endpoint's `_pin`); the home writes and trims meanwhile (a batch
    takes one Redis round trip). Here the resume is at the window's edge (the oldest kept event is
    last_seq + 1) and the home writes two more events between the decision and the mirror, trimming
    last_seq + 1 away: the mirror still replays every event from last_seq + 1, as the decision found
    them, then the ones after; no gap, never accepted then closed 4004 (ASP-RES-003, ASP-RES-007)."""
    window, last_seq = 5, 1
    async with home_and_other(tmp_path, replay_window=window) as (home, other, client):
        assert home.shared is not None and other.shared is not None
        session = await home.open_session("edge-user", "conv_edge")
        sent = Collecting()
        session.attach(sent)

        async def written(texts: list[str]) -> None:
            for text in texts:
                session.emit(events.pong(text))
            await session.flush()
            assert home.shared is not None
            await home.shared.journals[session.id].flush()

        await written([f"before-{index}" for index in range(last_seq + window)])
        remote = await other.shared.find(session.id, last_seq)
        assert remote is not None and remote.oldest_seq == last_seq + 1  # kept: the resume is accepted
        await written(["after-0", "after-1"])  # the home goes on: last_seq + 1 is trimmed away
        oldest = await client.xrange(other.shared.stream_key(session.id), count=1)
        assert int(oldest[0][0].split("-")[0]) > last_seq + 1
        mirror = other.shared.mirror(remote, last_seq)
        mirror.pin(last_seq + 1)
        resumed = Collecting()
        mirror.attach(resumed, after_seq=last_seq)
        newest = session.seq
        for _ in range(500):  # 10 s at most
            if resumed.close_code is not None or resumed.cursor >= newest:
                break
            await asyncio.sleep(0.02)
        assert resumed.close_code is None
        assert resumed.texts == {seq: sent.texts[seq] for seq in range(last_seq + 1, newest + 1)}


async def test_a_followers_position_holds_the_homes_trim_up_to_a_cap_until_it_expires(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A follower's position (the follow key, set by `find` and each tail read) keeps the entries after
    it while the home writes more than a window between two reads: the follower does not fall out of
    the window through the server's own lag (ASP-RES-003: at least replay_window). The cap
    (replay_window + FOLLOW_SLACK) bounds what a stuck follower keeps; the key's expiry releases it."""
    monkeypatch.setattr(redis_sessions, "FOLLOW_SLACK", 12)
    window = 5
    async with redis_hub(tmp_path, replay_window=window) as (hub, client):
        assert hub.shared is not None
        session = await hub.open_session("follow-user", "conv_follow")
        session.attach(Collecting())
        stream, follow = hub.shared.stream_key(session.id), hub.shared.follow_key(session.id)

        async def written(count: int) -> list[int]:
            for index in range(count):
                session.emit(events.pong(f"p{index}"))
            await session.flush()
            assert hub.shared is not None
            await hub.shared.journals[session.id].flush()
            return [int(entry_id.split("-")[0]) for entry_id, _ in await client.xrange(stream)]

        await written(window + 2)
        held = session.seq - 3  # the follower has read up to here: 3 entries after it, fewer than a window
        await client.set(follow, f"{held}-0 some-token", px=60_000)  # as `find` and the tail set it
        assert await written(2 * window) == list(range(held + 1, session.seq + 1))  # > a window kept
        assert await written(window) == list(range(session.seq - window - 12 + 1, session.seq + 1))  # cap
        await client.set(follow, f"{session.seq}-0", px=60_000)  # caught up: the window again, no less
        assert await written(1) == list(range(session.seq - window + 1, session.seq + 1))
        await client.set(follow, f"{session.seq}-0", px=1)  # a follower that stopped reading
        await asyncio.sleep(0.05)
        assert await written(window + 3) == list(range(session.seq - window + 1, session.seq + 1))


async def test_a_follow_key_is_released_only_by_the_resume_that_holds_it(tmp_path: Path) -> None:
    """`find` sets the follow key with a token of its own; `unfollow` deletes it only while it holds
    that token (one script: no check-then-act), so a stale follower (its resume refused, or its
    mirror stopped) never drops the position of a newer one that took the key since; the holder's
    own release deletes it at once, not at its expiry."""
    async with home_and_other(tmp_path) as (home, other, client):
        assert home.shared is not None and other.shared is not None
        session = await home.open_session("unfollow-user", "conv_unfollow")
        session.attach(Collecting())
        for index in range(3):
            session.emit(events.pong(f"p{index}"))
        await session.flush()
        await home.shared.journals[session.id].flush()
        follow = other.shared.follow_key(session.id)
        older = await other.shared.find(session.id, 1)
        newer = await other.shared.find(session.id, 2)
        assert older is not None and newer is not None and older.follow_token != newer.follow_token
        held = await client.get(follow)
        assert held == f"{session.seq}-0 {newer.follow_token}"
        assert await other.shared.unfollow(older) is False  # stale: the newer resume's key stays
        assert await client.get(follow) == held and await client.pttl(follow) > 0
        assert await other.shared.unfollow(newer) is True
        assert await client.exists(follow) == 0
        assert await other.shared.unfollow(newer) is False  # released twice: nothing to do


async def test_a_hand_over_writes_what_a_pin_held_back_before_its_marker(tmp_path: Path) -> None:
    """The home holds a pin (a resume here accepted at the window's edge, still switching) and
    events wait behind it when another process asks for the session: the hand-over releases every
    pin (`Session.release_all`), so those events are sequenced and written to the stream before
    the marker, and the new home's connection gets them with their seq. Before, the hand-over's
    flush waited out its 5 s for them, then closed the session with them in its outbox: lost."""
    window = 5
    async with home_and_other(tmp_path, replay_window=window) as (home, other, client):
        assert home.shared is not None and other.shared is not None
        session = await home.open_session("handover-user", "conv_handover")
        sent = Collecting()
        session.attach(sent)
        for index in range(window):
            session.emit(events.pong(f"before-{index}"))
        await session.flush()
        await home.shared.journals[session.id].flush()
        session.detach(sent)
        session.pin(1)  # a resume after last_seq 0: seq 1 is the oldest kept, a sixth would evict it
        for index in range(2):
            session.emit(events.pong(f"held-{index}"))
        await asyncio.sleep(0.05)
        assert session.seq == window and session.pinned  # held back behind the pin
        remote = await other.shared.find(session.id, window)
        assert remote is not None and remote.last_seq == window
        mirror = other.shared.mirror(remote, window)  # asks the home to hand the session over
        resumed = Collecting()
        mirror.attach(resumed, after_seq=window)
        for _ in range(200):  # 4 s at most, less than the hand-over's 5 s flush before the fix
            if resumed.cursor >= window + 2 and session.id in other.shared.journals:
                break
            await asyncio.sleep(0.02)
        texts = {seq: orjson.loads(text) for seq, text in resumed.texts.items()}
        assert {seq: event["id"] for seq, event in texts.items()} == {6: "held-0", 7: "held-1"}
        assert session.id in other.shared.journals and session.closed  # the other process holds it
        entries = await client.xrange(home.shared.stream_key(session.id))
        assert [entry_id for entry_id, _ in entries][-3:-1] == ["6-0", "7-0"]
        assert "handover" in entries[-1][1]  # the marker comes after them


async def test_a_run_ending_with_no_hand_over_waiting_keeps_a_resumes_pin(tmp_path: Path) -> None:
    """Only a session that leaves gives its pins up: a run that ends while a resume here switches
    (its pin at the window's edge) and no other process waits for the session leaves the pin, so
    the resume still replays from the event it was accepted on; the run's end is written once the
    pin is released."""
    window = 5
    async with redis_hub(tmp_path, replay_window=window) as (hub, client):
        assert hub.shared is not None
        session = await hub.open_session("run-end-user", "conv_run_end")
        for index in range(window):
            session.emit(events.pong(f"before-{index}"))
        await session.flush()
        session.pin(1)
        session.emit(events.pong("held"))
        ended = asyncio.create_task(hub.shared.run_ended(session))
        await asyncio.sleep(0.2)
        assert session.pinned and session.seq == window and session.oldest_kept_seq == 1
        resumed = Collecting()
        session.attach(resumed, after_seq=0)  # the resume attaches: it releases its pin
        await asyncio.wait_for(ended, 5)
        assert sorted(resumed.texts) == list(range(1, window + 2))
        entries = await client.xrange(hub.shared.stream_key(session.id))
        assert [entry_id for entry_id, _ in entries][-1] == f"{window + 1}-0"
