"""Real Redis and PostgreSQL for the scale-out tests, each test in its own namespace.

Where they come from, first found wins:
1. `ASP_TEST_REDIS_URL` / `ASP_TEST_DATABASE_URL`;
2. `.services/env` written by `tests/services.sh start` (the private servers `make test` starts on a
   machine that runs none);
3. the machine's own: redis://127.0.0.1:6379/0 and postgresql://postgres@127.0.0.1:5432/test.

A service that cannot be reached fails the test with what to do; these tests are never skipped.
Each test gets a fresh Redis key prefix and a fresh PostgreSQL database (dropped afterwards), so
parallel workers and two CI copies on one machine never meet.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest
import redis

from tests.support.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = ROOT / ".services" / "env"
DEFAULTS = {
    "ASP_TEST_REDIS_URL": "redis://127.0.0.1:6379/0",
    "ASP_TEST_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test",
}
Pair = Callable[..., tuple[ServerProcess, ServerProcess]]  # the `pair` fixture of tests/scale
HOW = "run `tests/services.sh start` (make test does) or set ASP_TEST_REDIS_URL / ASP_TEST_DATABASE_URL"


def service_url(name: str) -> str:
    if os.environ.get(name):
        return os.environ[name]
    if ENV_FILE.exists():
        for line in ENV_FILE.read_text().splitlines():
            key, _, value = line.partition("=")
            if key == name and value:
                return value
    return DEFAULTS[name]


def redis_url() -> str:
    url = service_url("ASP_TEST_REDIS_URL")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        pytest.fail(f"no Redis at {url} ({error}): {HOW}", pytrace=False)
    return url


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new empty PostgreSQL database for one test; yields its SQLAlchemy asyncpg URL."""
    admin = service_url("ASP_TEST_DATABASE_URL")
    name = f"asp_test_{secrets.token_hex(6)}"

    async def run(sql: str) -> None:
        connection = await asyncpg.connect(admin, timeout=5)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    def blocking(sql: str) -> None:  # in its own thread: callers may be inside an event loop
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, run(sql)).result()

    try:
        blocking(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as error:
        pytest.fail(f"no PostgreSQL at {admin} ({error}): {HOW}", pytrace=False)
    base, _, _ = admin.rpartition("/")
    try:
        yield base.replace("postgresql://", "postgresql+asyncpg://", 1) + "/" + name
    finally:
        blocking(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_prefix() -> str:
    return f"asp-test-{secrets.token_hex(6)}"
