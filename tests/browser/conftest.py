"""Headless Chromium (Debian's package) driven by Playwright against a real reference server."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.server import DEV_SERVE, ServerProcess

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is needed for the browser tests: `make test` installs it"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def dev_server(database: Path) -> ServerProcess:
    """`asp serve --dev` (the demo page's development sign-in) on a fixed free port, so a restarted
    server is found where the page left it."""
    return ServerProcess(
        database=database,
        settings={
            "ASP_TOKEN_DELAY_MS": "30",
            "ASP_PORT": str(free_port()),
            "ASP_HEARTBEAT_INTERVAL_MS": "1000",
        },
        module="asp_cli.main",
        args=DEV_SERVE,
    ).start()


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own, for tests that stop or restart it."""
    process = dev_server(tmp_path / "demo.db")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def shared_demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for a module's tests that leave it running (each signs in as its own user)."""
    process = dev_server(tmp_path_factory.mktemp("demo") / "demo.db")
    yield process
    process.stop()


def http_url(server: ServerProcess) -> str:
    return server.url.replace("ws://", "http://").removesuffix("/ws/chat") + "/"


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Page, server: ServerProcess, user: str = "browser-user") -> None:
    page.goto(http_url(server))
    page.fill("#username", user)
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#state[data-state=open]", timeout=10_000)


def send(page: Page, text: str) -> None:
    page.fill("#prompt", text)
    page.click("#send")
