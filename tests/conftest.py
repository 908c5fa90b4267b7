"""Shared fixtures: real servers on 127.0.0.1, and clients whose every event is judged by the oracle."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.wire import AspClient
from reference_server.config import env_name
from tests.support.server import DEV_SERVE, ServerProcess

# The test files that take longest, longest first: every file over 40 s in a run of the whole suite
# on three workers at load average 12 on two cores (327 s down to 40 s; the 68 others take less),
# from `pytest -n 3 --dist loadfile --junitxml` summed per file. With `--dist loadfile` a file runs
# whole on one worker, so a long file handed out last is the run's tail while the other workers
# idle: these go first. The Makefile passes --no-loadscope-reorder so that xdist keeps this order
# (by default it hands out the files with the most tests first). tests/test_harness.py fails on a
# name here that no longer exists.
LONGEST_FILES = [
    "tests/loadtests/test_scenarios.py",
    "tests/server/test_cli.py",
    "tests/scale/test_scale_out.py",
    "tests/conformance/test_kit_usage.py",
    "tests/conformance/test_broken_servers.py",
    "tests/examples/test_matrix.py",
    "tests/browser/test_check_client.py",
    "tests/scale/test_shared_sessions.py",
    "tests/client/test_broken_clients.py",
    "tests/browser/test_demo_page.py",
    "tests/server/test_fuzz.py",
    "tests/server/test_close_codes.py",
    "tests/server/test_shutdown.py",
    "tests/spec/test_validate_cli.py",
    "tests/loadtests/test_load_honesty.py",
    "tests/conformance/test_kit_behaviour.py",
    "tests/loadtests/test_cli.py",
    "tests/conformance/test_false_alarms.py",
    "tests/client/test_check_asp_client.py",
    "tests/server/test_http.py",
    "tests/loadtests/test_bench_environment.py",
    "tests/loadtests/test_broken_servers.py",
    "tests/server/test_heartbeats.py",
    "tests/server/test_slow_consumer.py",
    "tests/server/test_event_size.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """LONGEST_FILES' tests first, in that order; every file keeps its own order of tests, and the
    other files theirs (a stable sort)."""
    rank = {path: index for index, path in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.partition("::")[0], len(rank)))


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
