"""The history database's schema migrations (Alembic), run at start-up on every database but SQLite.

Several processes starting at once against one PostgreSQL database would race to create the
tables; `upgrade` holds a PostgreSQL advisory lock for the whole migration transaction, so exactly
one process migrates and the others find the schema current. The embedded SQLite default keeps
`metadata.create_all` (a file no other process shares).

Add a migration: `alembic -c reference_server/migrations/alembic.ini revision -m "what"` with the
database in `ASP_DATABASE_URL`, then write its upgrade and downgrade; tests/scale/test_migrations.py
checks that head equals `reference_server.storage.metadata`.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

HERE = Path(__file__).parent
LOCK_ID = 0x415350  # "ASP": the advisory lock every migrating process takes


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for this package; `connection` is the one migrations run on."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database to `revision`, one process at a time (PostgreSQL advisory lock)."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_ID})")
        await connection.run_sync(lambda sync: command.upgrade(config(sync), revision))


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_ID})")
        await connection.run_sync(lambda sync: command.downgrade(config(sync), revision))
