"""The two-process deployment every scale-out test starts (issue 13)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

from reference_server.config import env_name
from tests.support.server import ServerProcess
from tests.support.services import Pair, fresh_database, fresh_prefix, redis_url


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    """`pair(**settings)`: two processes sharing a fresh Redis prefix and a fresh PostgreSQL database."""
    started: list[ServerProcess] = []
    with fresh_database() as database_url:
        shared = {"ASP_REDIS_URL": redis_url(), "ASP_REDIS_PREFIX": fresh_prefix()}
        shared["ASP_DATABASE_URL"] = database_url

        def factory(**settings: Any) -> tuple[ServerProcess, ServerProcess]:
            env = shared | {env_name(key): str(value) for key, value in settings.items()}
            a, b = (ServerProcess(database=tmp_path / "unused.db", settings=env) for _ in range(2))
            started.extend((a, b))
            with ThreadPoolExecutor(2) as starting:  # both start at once: half the wait
                list(starting.map(ServerProcess.start, (a, b)))
            return a, b

        factory.prefix = shared["ASP_REDIS_PREFIX"]  # type: ignore[attr-defined]
        yield factory
        for process in started:
            process.stop()
        client = redis.Redis.from_url(shared["ASP_REDIS_URL"])
        leftovers = list(client.scan_iter(shared["ASP_REDIS_PREFIX"] + ":*"))
        if leftovers:
            client.delete(*leftovers)
