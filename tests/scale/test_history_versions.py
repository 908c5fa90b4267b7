"""The history cache of processes sharing one database (reference_server.storage.HistoryVersions,
reference_server.redis_state.RedisHistoryVersions): a copy is used only while its token in Redis is
current, so an exchange appended through one process is in the next load on every other (ASP-HIS-001,
ASP-SES-005), and an exchange is stored whatever Redis does. Two stores as two processes would hold
them, on a real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from pydantic_ai.messages import ModelMessagesTypeAdapter, ModelRequest, UserPromptPart
from sqlalchemy import event, select

from conformance.wire import AspClient
from reference_server.redis_state import RedisHistoryVersions
from reference_server.storage import COPY_MAX_AGE_S, Exchange, SqlConversationStore, exchanges
from tests.support.services import Pair, fresh_database, fresh_prefix, redis_url
from tests.support.tcp_proxy import TcpProxy


def exchange(prompt: str) -> Exchange:
    return Exchange(f"run-{prompt}", f"msg-{prompt}", "stop", (ModelRequest(parts=[UserPromptPart(prompt)]),))


def prompts(stored: list[Exchange]) -> list[str]:
    return [exchange.run_id.removeprefix("run-") for exchange in stored]


class Clock:
    """The stores' clock, moved by the test (seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class HeldReplacements(RedisHistoryVersions):
    """The real tokens in Redis; with `holding` set, the next replacement (an append's, after its
    commit) waits for `release` and says so with `reached`: an interleaving made certain."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        super().__init__(client, prefix)
        self.holding = False
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def replace(self, conversation_id: str) -> tuple[str, str]:
        if self.holding:
            self.holding = False
            self.reached.set()
            await self.release.wait()
        return await super().replace(conversation_id)


@asynccontextmanager
async def two_stores(
    clock: Callable[[], float] = time.monotonic,
    versions: Callable[[aioredis.Redis, str], RedisHistoryVersions] = RedisHistoryVersions,
) -> AsyncIterator[tuple[SqlConversationStore, SqlConversationStore, aioredis.Redis]]:
    """Two started stores on one fresh database and one fresh key prefix, each with its own client."""
    prefix = fresh_prefix()
    clients = [aioredis.Redis.from_url(redis_url(), decode_responses=True) for _ in range(2)]
    with fresh_database() as url:
        stores = [SqlConversationStore(url, versions=versions(c, prefix), clock=clock) for c in clients]
        for store in stores:
            await store.start()
        try:
            yield stores[0], stores[1], clients[0]
        finally:
            for store in stores:
                await store.close()
            keys = [key async for key in clients[0].scan_iter(match=f"{prefix}:*")]
            if keys:
                await clients[0].delete(*keys)
            for client in clients:
                await client.aclose()


async def test_an_exchange_appended_through_one_process_is_in_the_next_load_on_the_other() -> None:
    async with two_stores() as (a, b, _):
        conversation = await a.create("ana")
        assert await a.load(conversation, "ana") == []  # cached since its creation
        assert await b.load(conversation, "ana") == []  # read, and cached, by the other
        assert await a.append(conversation, "ana", exchange("one"))
        assert prompts(await b.load(conversation, "ana")) == ["one"]
        assert await b.append(conversation, "ana", exchange("two"))
        assert prompts(await a.load(conversation, "ana")) == ["one", "two"]
        assert prompts(await b.load(conversation, "ana")) == ["one", "two"]
        assert await b.load(conversation, "bob") == []  # the owner is checked on a cached copy too


async def test_a_process_that_appends_keeps_its_copy_exact_without_a_read() -> None:
    """The appending process's copy stays in use (its token is the new one) while no other append
    overlapped; the database is not read again for it."""
    async with two_stores() as (a, _, _):
        conversation = await a.create("cy")
        assert await a.append(conversation, "cy", exchange("one"))
        assert await a.append(conversation, "cy", exchange("two"))
        await a.engine.dispose()  # any read now would open a new connection: count them

        opened = 0

        def count(*_: object) -> None:
            nonlocal opened
            opened += 1

        event.listen(a.engine.sync_engine, "connect", count)
        assert prompts(await a.load(conversation, "cy")) == ["one", "two"]
        assert opened == 0


async def test_a_load_while_an_append_of_its_process_is_in_flight_leaves_the_row_once() -> None:
    """The appending process loads the conversation between the append's commit and its token's
    replacement (the row read, kept under the old token): the append does not add its row again."""
    async with two_stores(versions=HeldReplacements) as (a, b, _):
        held = a._versions
        assert isinstance(held, HeldReplacements)
        conversation = await b.create("gus")
        held.holding = True
        appending = asyncio.create_task(a.append(conversation, "gus", exchange("one")))
        await held.reached.wait()  # committed, its token not replaced yet
        assert prompts(await a.load(conversation, "gus")) == ["one"]
        held.release.set()
        assert await appending
        assert prompts(await a.load(conversation, "gus")) == ["one"]


async def test_two_appends_of_one_process_that_overlap_leave_the_stored_order() -> None:
    """The first append's token is replaced after the second append's: the copy is not extended
    in the order of replacements, which is not the stored order."""
    async with two_stores(versions=HeldReplacements) as (a, _, _):
        held = a._versions
        assert isinstance(held, HeldReplacements)
        conversation = await a.create("hal")  # a's copy: the conversation created, empty
        held.holding = True
        first = asyncio.create_task(a.append(conversation, "hal", exchange("one")))
        await held.reached.wait()  # "one" committed first, its token not replaced yet
        assert await a.append(conversation, "hal", exchange("two"))
        held.release.set()
        assert await first
        assert prompts(await a.load(conversation, "hal")) == ["one", "two"]


async def test_a_missed_token_replacement_is_unseen_for_at_most_the_copy_age() -> None:
    """A process that died inside an append (its row committed, its token never replaced): another
    process's copy read before it is used until it is COPY_MAX_AGE_S old, then the database is
    read; a copy its own appends extended is no younger than its read."""
    clock = Clock()
    async with two_stores(clock) as (a, b, _):
        age = COPY_MAX_AGE_S

        async def died_inside_an_append(prompt: str) -> None:
            late = exchange(prompt)
            payload = ModelMessagesTypeAdapter.dump_json(list(late.messages)).decode()
            assert await b._insert_exchange(conversation, "dee", late, payload)

        conversation = await a.create("dee")  # a's copy: read (created) at 0
        await died_inside_an_append("late")
        assert prompts(await b.load(conversation, "dee")) == ["late"]  # b had no copy: read
        clock.now = age - 0.1
        assert await a.load(conversation, "dee") == []  # the bound is the age, not sooner
        clock.now = age
        assert prompts(await a.load(conversation, "dee")) == ["late"]  # read again at `age`
        clock.now = age + 1
        assert await a.append(conversation, "dee", exchange("next"))  # a's copy extended
        await died_inside_an_append("lost")
        clock.now = 2 * age - 0.1
        assert prompts(await a.load(conversation, "dee")) == ["late", "next"]
        clock.now = 2 * age  # the extended copy's age counts from its read at `age`, not its append
        assert prompts(await a.load(conversation, "dee")) == ["late", "next", "lost"]


async def test_an_exchange_is_stored_when_redis_fails_at_its_append() -> None:
    """Redis unreachable for the appending process at the moment of its append (its connections
    reset, new ones refused: a proxy stopped): the exchange is still stored in the database, and
    the next loads, on that process (Redis still down) and on another, return it."""
    target = urlsplit(redis_url())
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    prefix = fresh_prefix()
    cut = aioredis.Redis.from_url(
        target._replace(netloc=f"127.0.0.1:{proxy.port}").geturl(), decode_responses=True
    )
    direct = aioredis.Redis.from_url(redis_url(), decode_responses=True)
    with fresh_database() as url:
        a = SqlConversationStore(url, versions=RedisHistoryVersions(cut, prefix))
        b = SqlConversationStore(url, versions=RedisHistoryVersions(direct, prefix))
        await a.start()
        await b.start()
        try:
            conversation = await a.create("fay")
            assert await a.load(conversation, "fay") == []  # cached, under a token Redis gave
            await proxy.stop()
            assert await a.append(conversation, "fay", exchange("kept"))
            async with a.engine.connect() as connection:
                stored = (await connection.execute(select(exchanges.c.run_id))).scalars().all()
            assert stored == ["run-kept"]
            assert prompts(await a.load(conversation, "fay")) == ["kept"]  # Redis still down
            assert prompts(await b.load(conversation, "fay")) == ["kept"]
            assert await b.append(conversation, "fay", exchange("after"))
            assert prompts(await a.load(conversation, "fay")) == ["kept", "after"]  # nothing kept
        finally:
            await a.close()
            await b.close()
            keys = [key async for key in direct.scan_iter(match=f"{prefix}:*")]
            if keys:
                await direct.delete(*keys)
            await cut.aclose()
            await direct.aclose()
            await proxy.stop()


async def test_a_turn_stored_through_one_process_is_in_the_history_a_connection_to_the_other_gets(
    pair: Pair,
) -> None:
    a, b = pair()
    first = await AspClient.open(b.url, token=b.token("eve"), conversation_id="new")
    conversation = (await first.expect("session"))["conversation_id"]
    await first.send({"type": "message", "content": "asp-fixture:text 2"})
    await first.collect_run()
    await first.close()
    seen = await AspClient.open(b.url, token=b.token("eve"), conversation_id=conversation)
    await seen.expect("session")
    assert len((await seen.expect("history"))["messages"]) == 2  # read, and cached, by b
    await seen.close()
    other = await AspClient.open(a.url, token=a.token("eve"), conversation_id=conversation)
    await other.expect("session")
    await other.expect("history")
    await other.send({"type": "message", "content": "asp-fixture:text 3"})
    await other.collect_run()
    await other.close()
    again = await AspClient.open(b.url, token=b.token("eve"), conversation_id=conversation)
    await again.expect("session")
    entries = (await again.expect("history"))["messages"]
    assert [entry["role"] for entry in entries] == ["user", "assistant", "user", "assistant"]
    assert entries[2]["content"] == "asp-fixture:text 3"
    await again.close()
