"""Alembic's environment: migrations run on the connection `reference_server.migrations` hands over,
or, from the alembic command line, on `ASP_DATABASE_URL` (a sync URL: postgresql://...)."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from reference_server.storage import metadata

connection = context.config.attributes.get("connection")
if connection is not None:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    url = os.environ["ASP_DATABASE_URL"].replace("+asyncpg", "").replace("+aiosqlite", "")
    with create_engine(url).begin() as own:
        context.configure(connection=own, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
