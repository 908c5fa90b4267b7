"""The conversation each user last bound is cached per user (issue 16: a plain reconnect reads no
database); the cache must answer exactly what the table does (ASP-SES-009), per user."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from reference_server.storage import LatestCache, SqlConversationStore
from tests.support.server import ServerProcess


def test_a_value_is_kept_only_from_a_write_no_other_write_of_the_user_overlapped():
    cache = LatestCache(10)
    cache.begin_write("u")
    cache.end_write("u", "c1")
    assert cache.get("u") == "c1"
    cache.begin_write("u")  # a write begins: the old value is forgotten at once
    assert cache.get("u") is None
    cache.begin_write("u")  # a second overlaps it
    cache.end_write("u", "c2")
    cache.end_write("u", "c3")
    assert cache.get("u") is None  # which one the table orders last is the table's to say
    cache.begin_write("u")
    cache.end_write("u", None)  # refused or failed: nothing known
    assert cache.get("u") is None


def test_a_read_is_kept_only_when_no_write_began_during_it_or_was_in_flight():
    cache = LatestCache(10)
    ticket = cache.reading("u")
    cache.begin_write("v")  # any write, of any user, during the read
    cache.end_write("v", "cv")
    cache.read("u", ticket, "stale-maybe")
    assert cache.get("u") is None
    cache.begin_write("u")
    assert cache.reading("u") is None  # the user's write in flight: a read may not keep its answer
    cache.end_write("u", "cu")
    ticket = cache.reading("w")
    cache.read("w", ticket, "cw")
    assert cache.get("w") == "cw"
    ticket = cache.reading("x")
    cache.read("x", ticket, None)  # no conversation: nothing kept
    assert cache.get("x") is None


def test_the_cache_is_bounded_and_size_zero_keeps_nothing():
    cache = LatestCache(2)
    for user in ("a", "b", "c"):
        cache.begin_write(user)
        cache.end_write(user, f"conv-{user}")
    assert [cache.get(u) for u in ("a", "b", "c")] == [None, "conv-b", "conv-c"]
    off = LatestCache(0)
    off.begin_write("a")
    off.end_write("a", "conv-a")
    assert off.get("a") is None and off.reading("a") is None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[SqlConversationStore, list[str]]]:
    made = SqlConversationStore(f"sqlite+aiosqlite:///{tmp_path / 'l.db'}")
    await made.start()
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(made.engine.sync_engine, "before_cursor_execute", seen)
    try:
        yield made, statements
    finally:
        await made.close()


async def test_latest_follows_every_write_and_reads_the_database_once(store):
    made, statements = store
    first = await made.create("alice")
    assert await made.latest("alice") == first
    second = await made.create("alice")
    assert await made.latest("alice") == second
    assert await made.bind(first, "alice")
    statements.clear()
    assert await made.latest("alice") == first
    assert not [s for s in statements if s.lstrip().upper().startswith("SELECT")]  # from the cache
    assert not await made.bind(second, "mallory")  # not hers: refused, nothing changes
    assert await made.latest("alice") == first
    assert await made.latest("mallory") is None


async def test_two_users_never_share_a_binding(store):
    made, _ = store
    alice = await made.create("alice")
    assert await made.latest("bob") is None
    bob = await made.create("bob")
    assert not await made.bind(alice, "bob")  # bob names alice's conversation
    assert (await made.latest("alice"), await made.latest("bob")) == (alice, bob)


async def test_concurrent_writes_of_one_user_leave_the_tables_answer(store, tmp_path: Path):
    made, _ = store
    conversations = [await made.create("carol") for _ in range(5)]
    await asyncio.gather(*[made.bind(c, "carol") for c in conversations], made.create("carol"))
    cached = await made.latest("carol")
    fresh = SqlConversationStore(f"sqlite+aiosqlite:///{tmp_path / 'l.db'}", cache_size=0)
    try:
        assert cached == await fresh.latest("carol")  # what the table says, read by a store with no cache
    finally:
        await fresh.close()


async def test_a_store_without_cache_reads_the_database_each_time(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'n.db'}"
    one, other = SqlConversationStore(url, cache_size=0), SqlConversationStore(url, cache_size=0)
    await one.start()
    try:
        first = await one.create("dave")
        assert await one.latest("dave") == first
        second = await other.create("dave")  # another process's write
        assert await one.latest("dave") == second
    finally:
        await one.close()
        await other.close()


async def test_a_binding_made_by_one_connection_is_what_the_next_plain_connect_gets(
    server: ServerProcess, connect
):
    """Over sockets: each kind of write (new, named, resume) is seen by the next plain connect, and
    another user's connects in between never see it."""

    async def plain_connect(user: str) -> str:
        client = await connect(server, user=user)
        conversation: str = (await client.expect("session"))["conversation_id"]
        await client.close()
        return conversation

    first = await connect(server, user="lc-erin", conversation_id="new")
    session = await first.expect("session")
    conversation = session["conversation_id"]
    await first.close()
    assert await plain_connect("lc-erin") == conversation
    franks = await plain_connect("lc-frank")
    assert franks != conversation
    fresh = await connect(server, user="lc-erin", conversation_id="new")
    newer = (await fresh.expect("session"))["conversation_id"]
    await fresh.close()
    assert await plain_connect("lc-erin") == newer
    named = await connect(server, user="lc-erin", conversation_id=conversation)
    await named.expect("session")
    await named.close()
    assert await plain_connect("lc-erin") == conversation
    stolen = await connect(server, user="lc-frank", conversation_id=conversation)  # not frank's
    assert (await stolen.expect("session"))["conversation_id"] != conversation
    await stolen.close()
    assert await plain_connect("lc-frank") not in (conversation, newer)
    # a resume binds the resumed session's conversation (ASP-SES-009)
    another = await connect(server, user="lc-erin", conversation_id="new")
    assert (await another.expect("session"))["conversation_id"] not in (conversation, newer)
    await another.send({"type": "resume", "session_id": session["session_id"], "last_seq": session["seq"]})
    await another.expect("resumed")  # bound before it was sent: the next plain connect at once sees it
    await another.close()
    assert await plain_connect("lc-erin") == conversation
