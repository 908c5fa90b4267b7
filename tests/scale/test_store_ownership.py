"""A stored run is written only into its owner's conversation (ASP-HIS-006), on SQLite and on
PostgreSQL alike: a refused append writes nothing and returns False, whatever it carries, and the
history cache stays the table."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic_ai.messages import ModelRequest, ModelResponse, TextPart, UserPromptPart
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from reference_server.storage import Exchange, SqlConversationStore, exchanges
from tests.support.services import fresh_database


def exchange(run_id: str, message_id: str = "", text: str = "answer") -> Exchange:
    messages = (ModelRequest(parts=[UserPromptPart("q")]), ModelResponse(parts=[TextPart(text)]))
    return Exchange(run_id, message_id or f"m_{run_id}", "stop", messages)


@contextlib.contextmanager
def database(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database of `backend` ("sqlite" or "postgresql"); yields its SQLAlchemy URL."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'history.db'}"
        return
    with fresh_database() as url:
        yield url


async def stored(store: SqlConversationStore, conversation_id: str) -> list[str]:
    """The run ids of the conversation's rows, in table order, read past the store's cache."""
    async with store.engine.connect() as connection:
        rows = await connection.execute(
            select(exchanges.c.run_id)
            .where(exchanges.c.conversation_id == conversation_id)
            .order_by(exchanges.c.id)
        )
        return [str(run_id) for (run_id,) in rows]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_refused_append_writes_nothing_and_is_false_whatever_it_carries(
    backend: str, tmp_path: Path
) -> None:
    """Another user's conversation, or one that does not exist: False and no row, also when a value
    is longer than its column. On PostgreSQL such a refusal raised 'value too long for type
    character varying(N)' (the single INSERT ... SELECT fits its values to the columns when it is
    planned, before its ownership condition runs), where the ownership check before the insert had
    returned False. The owner's over-long value is still an error there."""
    with database(backend, tmp_path) as url:
        store = SqlConversationStore(url)
        await store.start()
        try:
            mine = await store.create("alice")
            assert await store.append(mine, "alice", exchange("run_1"))
            refused = [
                (mine, "bob", exchange("run_x")),
                (mine, "bob", exchange("run_x", message_id="m" * 200)),  # column: 128
                (mine, "b" * 300, exchange("run_x")),  # column: 256
                ("conv_" + "0" * 24, "alice", exchange("run_x")),  # no such conversation
                ("conv_" + "0" * 24, "alice", exchange("run_x", message_id="m" * 200)),
                ("c" * 100, "alice", exchange("run_x")),  # column: 64
            ]
            for conversation_id, user_id, attempt in refused:
                assert await store.append(conversation_id, user_id, attempt) is False, (
                    conversation_id[:10],
                    user_id[:10],
                    attempt.message_id[:10],
                )
            assert await stored(store, mine) == ["run_1"]
            if backend == "postgresql":
                with pytest.raises(DBAPIError, match="value too long"):
                    await store.append(mine, "alice", exchange("run_2", message_id="m" * 200))
            # concurrent appends, the owner's and another user's interleaved: every one of the
            # owner's written, none of the other's, and a load is the table
            await store.load(mine, "alice")  # cached
            results = await asyncio.gather(
                *(
                    store.append(mine, "alice" if index % 2 else "bob", exchange(f"run_c{index}"))
                    for index in range(30)
                )
            )
            assert results == [index % 2 == 1 for index in range(30)]
            rows = await stored(store, mine)
            assert sorted(rows) == sorted(["run_1", *(f"run_c{index}" for index in range(1, 30, 2))])
            assert [e.run_id for e in await store.load(mine, "alice")] == rows
            assert await store.load(mine, "bob") == []
        finally:
            await store.close()
