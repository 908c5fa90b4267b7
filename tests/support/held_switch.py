"""A resume's switch held open: the resumed conversation's row is locked by the test, so the resume's
bind (an UPDATE of that row, awaited between the resume's decision and its switch) waits on it, and
so does the insert of the run's exchange when the run ends, until the test releases the lock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from asyncpg.transaction import Transaction


class HeldSwitch:
    """The lock `holding_the_switch` holds; `database` is its PostgreSQL connection (in the
    transaction that holds the lock until `release`)."""

    def __init__(self, database: asyncpg.Connection, holding: Transaction) -> None:
        self.database = database
        self._holding: Transaction | None = holding

    async def waiting(self) -> int:
        """How many backends wait on a lock now (the resume's bind, the run's insert)."""
        return int(await self.database.fetchval("SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted"))

    async def until_the_bind_and_the_insert_wait(self, timeout_s: float = 60.0) -> None:
        """Wait until two backends wait on a lock: the resume's bind, and the insert of the run's
        exchange (the run streamed everything while the switch waited); AssertionError after
        `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while await self.waiting() < 2:
            assert time.monotonic() < deadline, (
                "the resume's bind and the run's insert did not both wait: a resume checked after its"
                " last_seq + 1 left the replay window is refused (resume_failed) and binds nothing"
            )
            await asyncio.sleep(0.05)

    async def release(self) -> None:
        """Roll the lock's transaction back: what waited on it goes on. Nothing when released."""
        holding, self._holding = self._holding, None
        if holding is not None:
            await holding.rollback()


@asynccontextmanager
async def holding_the_switch(database_url: str, conversation_id: str) -> AsyncIterator[HeldSwitch]:
    """Lock the row of `conversation_id` in `asp_conversations` (SELECT ... FOR UPDATE) of the
    database at `database_url` (the server's `postgresql+asyncpg://` URL or a plain one) for the
    block; released on leaving it at the latest, the connection then closed."""
    url = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    database = await asyncpg.connect(url)
    try:
        holding = database.transaction()
        await holding.start()
        held = HeldSwitch(database, holding)
        try:
            await database.execute(
                "SELECT 1 FROM asp_conversations WHERE id = $1 FOR UPDATE", conversation_id
            )
            yield held
        finally:
            await held.release()
    finally:
        await database.close()
