"""Alembic migrations on a real PostgreSQL: head equals the models, down and up again, and
concurrent upgrades (several processes starting at once) do not race."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from reference_server.migrations import downgrade, upgrade
from reference_server.storage import metadata
from tests.support.services import fresh_database


async def test_head_matches_the_models_and_downgrades_cleanly() -> None:
    with fresh_database() as url:
        engines = [create_async_engine(url) for _ in range(3)]
        try:
            await asyncio.gather(*(upgrade(engine) for engine in engines))  # three "processes" at once
            async with engines[0].connect() as connection:
                diff = await connection.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
                )
                assert diff == []
            await downgrade(engines[0])
            async with engines[0].connect() as connection:
                tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
            assert set(tables) <= {"alembic_version"}
            await upgrade(engines[0])
        finally:
            for engine in engines:
                await engine.dispose()
