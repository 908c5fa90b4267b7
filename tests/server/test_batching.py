"""Conversation creates and latest-binding reads are batched: concurrent connects share one
statement, and each still gets its own answer (bench: connects/s, issue 16)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from reference_server import storage
from reference_server.storage import Batcher, SqlConversationStore
from tests.support.services import fresh_database


async def test_items_submitted_while_a_write_is_in_flight_go_together_in_order():
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def write(items: list[int]) -> list[None]:
        batches.append(items)
        await release.wait()
        return [None] * len(items)

    commit: Batcher[int, None] = Batcher(write)
    first = asyncio.create_task(commit.submit(0))
    await asyncio.sleep(0)  # the first write is in flight
    rest = [asyncio.create_task(commit.submit(i)) for i in range(1, 6)]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *rest)
    assert batches == [[0], [1, 2, 3, 4, 5]]
    await commit.submit(6)  # alone: written at once
    assert batches[-1] == [6]


async def test_a_failed_write_fails_every_item_of_its_batch_and_not_the_next():
    calls = 0

    async def write(items: list[str]) -> list[None]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls == 1:
            raise RuntimeError("disk full")
        return [None] * len(items)

    commit: Batcher[str, None] = Batcher(write)
    outcomes = await asyncio.gather(commit.submit("a"), return_exceptions=True)
    assert isinstance(outcomes[0], RuntimeError)
    await commit.submit("b")  # the writer recovered


async def test_a_cancelled_submitter_does_not_break_the_others():
    release = asyncio.Event()
    written: list[str] = []

    async def write(items: list[str]) -> list[None]:
        await release.wait()
        written.extend(items)
        return [None] * len(items)

    commit: Batcher[str, None] = Batcher(write)
    waiting = asyncio.create_task(commit.submit("a"))
    other = asyncio.create_task(commit.submit("b"))
    await asyncio.sleep(0)
    waiting.cancel()
    release.set()
    await other
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert written == ["a", "b"]


async def test_concurrent_creates_each_store_a_conversation_of_their_user(tmp_path: Path):
    store = SqlConversationStore(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    await store.start()
    try:
        users = [f"user-{i % 7}" for i in range(60)]
        created = await asyncio.gather(*[store.create(user) for user in users])
        assert len(set(created)) == len(created)
        for conversation, user in zip(created, users, strict=True):
            assert await store.bind(conversation, user)  # stored, and owned by its user only
            other = "user-x" if user != "user-x" else "user-y"
            assert not await store.bind(conversation, other)
    finally:
        await store.close()


async def test_a_cancelled_writer_leaves_no_submitter_waiting():
    started = asyncio.Event()

    async def write(items: list[str]) -> list[None]:
        started.set()
        await asyncio.Event().wait()
        return []

    commit: Batcher[str, None] = Batcher(write)
    first = asyncio.create_task(commit.submit("a"))
    await started.wait()
    queued = asyncio.create_task(commit.submit("b"))
    await asyncio.sleep(0)
    assert commit._runner is not None
    commit._runner.cancel()
    for submitter in (first, queued):
        with pytest.raises(asyncio.CancelledError):
            await submitter


async def test_each_submitter_gets_its_own_result():
    async def double(items: list[int]) -> list[int]:
        await asyncio.sleep(0)
        return [2 * i for i in items]

    batcher: Batcher[int, int] = Batcher(double)
    assert await asyncio.gather(*[batcher.submit(i) for i in range(20)]) == [2 * i for i in range(20)]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
        return
    with fresh_database() as url:
        yield url


async def test_a_batched_latest_read_answers_each_user_as_a_single_read_does(
    database_url: str, monkeypatch: pytest.MonkeyPatch
):
    url = database_url
    store = SqlConversationStore(url)
    plain = SqlConversationStore(url, cache_size=0)  # no cache: every latest() reads the table
    await store.start()
    try:
        expected: dict[str, str | None] = {}
        for index in range(30):
            user = f"reader-{index}"
            made = [await store.create(user) for _ in range(index % 4)]
            if len(made) > 1:
                assert await store.bind(made[0], user)  # an older one bound last
            expected[user] = made[0] if made else None
        users = [*expected, *expected, "nobody"]  # duplicates, and a user with none
        answers = await asyncio.gather(*[plain.latest(user) for user in users])
        assert answers == [expected.get(user) for user in users]
        monkeypatch.setattr(storage, "LATEST_READ_CHUNK", 7)
        assert await plain._read_latest(users) == answers  # one batch over several queries
    finally:
        await store.close()
        await plain.close()
