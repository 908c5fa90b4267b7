"""Servers for the kit's own tests: announced timings short enough for a full check in seconds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.options import CheckOptions
from tests.support.server import SECRET, ServerProcess

# A one-second idle timeout under a five-second heartbeat (FAST_DEFAULTS): legal, and the kit must
# hold every connection through it without a false alarm.
CHECK_SETTINGS = {
    "ASP_IDLE_TIMEOUT_MS": "1000",
    "ASP_MAX_CONNECTIONS": "20",
    "ASP_RATE_LIMIT_MESSAGES": "10",
}


def start(database: Path, module: str = "reference_server", **extra: str) -> ServerProcess:
    return ServerProcess(database=database, settings={**CHECK_SETTINGS, **extra}, module=module).start()


def options(server: ServerProcess, **extra: object) -> CheckOptions:
    return CheckOptions(**{"url": server.url, "jwt_secret": SECRET, **extra})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def check_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start(tmp_path_factory.mktemp("check") / "asp.db")
    yield process
    process.stop()


@pytest.fixture(scope="session")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server with every middleware fault of the panel, each at its own path (faults.panel_url)."""
    process = start(
        tmp_path_factory.mktemp("panel") / "asp.db", module="tests.support.broken_server", ASP_FAULT="panel"
    )
    yield process
    process.stop()
