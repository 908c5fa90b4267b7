"""Shared fixtures: real servers on 127.0.0.1, and clients whose every event is judged by the oracle."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.wire import AspClient
from reference_server.config import env_name
from tests.support.server import DEV_SERVE, ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One reference server per test module, fixtures on, instant model."""
    process = ServerProcess(database=tmp_path_factory.mktemp("db") / "asp.db").start()
    yield process
    process.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start a server with specific settings (ASP_ names without the prefix, lower case)."""
    started: list[ServerProcess] = []

    def factory(database: Path | None = None, dev: bool = False, **settings: Any) -> ServerProcess:
        """`dev=True` runs `asp serve --dev` (development mode) instead of `python -m reference_server`."""
        env = {env_name(key): str(value) for key, value in settings.items()}
        command = {"module": "asp_cli.main", "args": DEV_SERVE} if dev else {}
        process = ServerProcess(database=database or tmp_path / "asp.db", settings=env, **command).start()
        started.append(process)
        return process

    yield factory
    for process in started:
        process.stop()


@pytest.fixture
async def connect(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Any]]:
    """Open clients; at teardown every event any of them received must have passed the oracle."""
    clients: list[AspClient] = []

    async def opener(server: ServerProcess, user: str | None = "alice", **options: Any) -> AspClient:
        token = options.pop("token", server.token(user) if user else None)
        client = await AspClient.open(server.url, token=token, **options)
        clients.append(client)
        return client

    yield opener
    for client in clients:
        await client.close()
    violations = [str(v) for client in clients for v in client.violations]
    assert violations == [], "server events broke the spec:\n" + "\n".join(violations)
