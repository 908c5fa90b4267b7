"""The minimal server (examples/minimal_server) in a subprocess, with tokens minted for it by PyJWT."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest

from conformance.wire import AspClient
from tests.support.server import SECRET, ServerProcess

Opener = Callable[..., Any]  # the `connect` fixture of tests/conftest.py
Event = dict[str, Any]


def mint(
    user: str | None, ttl: int = 3600, *, key: str = SECRET, algorithm: str = "HS256", **claims: Any
) -> str:
    """An HS256 token for `user` (no `sub` when None), valid `ttl` seconds; `claims` override."""
    now = int(time.time())
    body: dict[str, Any] = {"iat": now, "exp": now + ttl, **({"sub": user} if user is not None else {})}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=algorithm)


@dataclass
class MinimalServer(ServerProcess):
    """`python -m examples.minimal_server`, ready once it prints its URL."""

    module: str = "examples.minimal_server"
    ready_marker: str | None = None

    def env(self) -> dict[str, str]:
        env = super().env()
        env.pop("ASP_DATABASE_URL", None)
        env["ASP_DATABASE"] = str(self.database)
        return env

    def token(self, user: str, ttl: int = 3600) -> str:
        return mint(user, ttl)


@pytest.fixture(scope="module")
def minimal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinimalServer]:
    """One minimal server per test module: fixtures on, instant model, short heartbeats."""
    process = MinimalServer(database=tmp_path_factory.mktemp("minimal") / "asp.db")
    process.start()
    yield process
    process.stop()


@pytest.fixture
def make_minimal(tmp_path: Path) -> Iterator[Callable[..., MinimalServer]]:
    """Start a minimal server with specific settings (ASP_ names without the prefix, lower case)."""
    started: list[MinimalServer] = []

    def factory(database: Path | None = None, **settings: Any) -> MinimalServer:
        env = {f"ASP_{key.upper()}": str(value) for key, value in settings.items()}
        process = MinimalServer(database=database or tmp_path / "asp.db", settings=env)
        process.start()
        started.append(process)
        return process

    yield factory
    for process in started:
        process.stop()


Starter = Callable[..., MinimalServer]


async def opened(
    connect: Opener, server: MinimalServer, user: str, **options: Any
) -> tuple[AspClient, Event]:
    """A connection of `user` (judged by the oracle, see tests/conftest.py) and its session event."""
    client: AspClient = await connect(server, user, **options)
    return client, await client.expect("session", 5)
