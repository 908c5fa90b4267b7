"""Conversation creates are group-committed: concurrent connects share one transaction, and each
still gets its own stored conversation (bench: connects/s, issue 16)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reference_server.storage import GroupCommit, SqlConversationStore


async def test_items_submitted_while_a_write_is_in_flight_go_together_in_order():
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def write(items: list[int]) -> None:
        batches.append(items)
        await release.wait()

    commit: GroupCommit[int] = GroupCommit(write)
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

    async def write(items: list[str]) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls == 1:
            raise RuntimeError("disk full")

    commit: GroupCommit[str] = GroupCommit(write)
    outcomes = await asyncio.gather(commit.submit("a"), return_exceptions=True)
    assert isinstance(outcomes[0], RuntimeError)
    await commit.submit("b")  # the writer recovered


async def test_a_cancelled_submitter_does_not_break_the_others():
    release = asyncio.Event()
    written: list[str] = []

    async def write(items: list[str]) -> None:
        await release.wait()
        written.extend(items)

    commit: GroupCommit[str] = GroupCommit(write)
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

    async def write(items: list[str]) -> None:
        started.set()
        await asyncio.Event().wait()

    commit: GroupCommit[str] = GroupCommit(write)
    first = asyncio.create_task(commit.submit("a"))
    await started.wait()
    queued = asyncio.create_task(commit.submit("b"))
    await asyncio.sleep(0)
    assert commit._writer is not None
    commit._writer.cancel()
    for submitter in (first, queued):
        with pytest.raises(asyncio.CancelledError):
            await submitter
