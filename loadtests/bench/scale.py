"""The shared state of `asp bench --redis-url URL [--database-url URL]`'s scale-out section (issue 13).

`asp bench` (loadtests.bench.run) measures the section with its own sweep, stream and
connection-scale code; this module only provides what those servers share, and takes it away after:

- `problem(redis_url, database_url)`: why the URLs cannot be used, one line naming the flag, checked
  before anything starts (reference_server.stores' own checks; a password is never shown);
- `provisioned(...)`: a Redis key prefix no other user of that Redis has (`asp-bench-<random>`;
  each server gets its own under it) and, with a PostgreSQL URL, a fresh database created beside
  the one named and dropped at the end (the URL's role needs CREATEDB); without one, each server
  keeps its history in a SQLite file of its own, as the embedded server does. At the end every key
  under the prefix is deleted;
- `redis_cpu_s(url)`: the Redis server's CPU seconds (INFO cpu), to tell whether Redis was the limit.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

POSTGRES_EXAMPLE = "postgresql+asyncpg://USER@HOST:5432/DATABASE"


@dataclass
class SharedState:
    """Where the scale-out servers keep their state during one run (see `provisioned`)."""

    redis_url: str
    prefix: str
    database_url: str = ""  # the fresh database's SQLAlchemy URL; "" = a SQLite file per server
    database: str = ""  # its name, reported
    _servers: int = field(default=0, repr=False)

    def env(self) -> dict[str, str]:
        """The ASP_ settings of one more server on this state: its own key prefix under the run's
        (no connection limit or lease shared with another server of the run), the run's database."""
        self._servers += 1
        out = {"ASP_REDIS_URL": self.redis_url, "ASP_REDIS_PREFIX": f"{self.prefix}-{self._servers}"}
        if self.database_url:
            out["ASP_DATABASE_URL"] = self.database_url
        return out


def _postgres(url: str) -> URL:
    """A PostgreSQL `url` (given with or without a driver), parsed.

    Raises ValueError (a sentence) when it does not parse or names another database."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ValueError(f"is not a database URL; use one such as {POSTGRES_EXAMPLE}") from None
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(
            f"{parsed.render_as_string(hide_password=True)} is not PostgreSQL; the bench creates a "
            f"fresh PostgreSQL database beside the one named: use one such as {POSTGRES_EXAMPLE}"
        )
    return parsed


def _render(url: URL, driver: str, database: str | None = None) -> str:
    """`url` with `driver` (and `database`), password included: for the driver, never shown."""
    return url.set(drivername=driver, database=database or url.database).render_as_string(hide_password=False)


def problem(redis_url: str, database_url: str = "") -> str | None:
    """Why the bench cannot use these URLs (one line naming the flag, no password), or None.

    Connects to each once (a Redis PING, a PostgreSQL connection)."""
    from reference_server.stores import open_problem, redis_open_problem, redis_url_problem

    found = redis_url_problem(redis_url) or redis_open_problem(redis_url)
    if found:
        return f"--redis-url: {found}"
    if database_url:
        try:
            parsed = _postgres(database_url)
        except ValueError as invalid:
            return f"--database-url: {invalid}"
        found = open_problem(_render(parsed, "postgresql+asyncpg"))
        if found:
            return f"--database-url: {found}"
    return None


async def _execute(url: str, sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    connection = await asyncpg.connect(url, timeout=15)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@asynccontextmanager
async def provisioned(redis_url: str, database_url: str = "") -> AsyncIterator[SharedState]:
    """A fresh prefix (and database) for one run; every key under the prefix deleted and the
    database dropped on the way out, however the run ends. Raises what asyncpg raises when the
    database cannot be created."""
    import redis.asyncio as aioredis

    shared = SharedState(redis_url, f"asp-bench-{secrets.token_hex(6)}")
    admin = ""
    if database_url:
        parsed = _postgres(database_url)
        admin = _render(parsed, "postgresql")
        shared.database = f"asp_bench_{secrets.token_hex(6)}"
        await _execute(admin, f'CREATE DATABASE "{shared.database}"')
        shared.database_url = _render(parsed, "postgresql+asyncpg", shared.database)
    try:
        yield shared
    finally:
        client = aioredis.Redis.from_url(redis_url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{shared.prefix}-*", count=1000)]
            for start in range(0, len(keys), 1000):
                await client.delete(*keys[start : start + 1000])
        finally:
            await client.aclose()
        if admin:
            await _execute(admin, f'DROP DATABASE IF EXISTS "{shared.database}" WITH (FORCE)')


async def redis_cpu_s(redis_url: str) -> float:
    """CPU seconds (user + system, main process) the Redis server has used since it started: its
    share of a phase is the difference over the phase. On a Redis others use too, theirs is in it."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        info = await client.info("cpu")
    finally:
        await client.aclose()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


if __name__ == "__main__":  # the section's old command: say where it went
    raise SystemExit(
        "the scale-out figures are a section of `asp bench`: asp bench --redis-url URL [--database-url URL]"
    )
