"""What a browser sees when the server refuses: the close code itself, never 1006 (ASP-VER-006)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import free_port, http_url, shot
from tests.support.server import ServerProcess

OPEN_AND_REPORT = """([url, protocols]) => new Promise((resolve) => {
  const socket = new WebSocket(url, protocols);
  let opened = null;
  socket.onopen = () => { opened = socket.protocol; };
  socket.onclose = (event) => resolve({ code: event.code, opened, selected: socket.protocol });
  setTimeout(() => resolve({ code: "no close within 10 s", opened }), 10000);
})"""


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`python -m reference_server`: no development mode."""
    database = tmp_path_factory.mktemp("browser-plain") / "asp.db"
    process = ServerProcess(database=database, settings={"ASP_PORT": str(free_port())}).start()
    yield process
    process.stop()


@pytest.mark.parametrize(
    "protocols",
    [["asp.v2"], ["asp.v2", "asp.token.{token}"], ["asp.v9", "asp.v2"]],
    ids=["version only", "version and token", "two unknown versions"],
)
def test_defect_14_chromium_sees_4000_for_an_unsupported_version(
    browser: Browser, plain_server: ServerProcess, protocols: list[str]
):
    page = browser.new_page()
    page.goto(http_url(plain_server))
    offered = [p.format(token=plain_server.token("browser-v")) for p in protocols]
    outcome = page.evaluate(OPEN_AND_REPORT, [plain_server.url, offered])
    assert outcome == {"code": 4000, "opened": protocols[0], "selected": protocols[0]}


def test_chromium_sees_4001_for_a_bad_token(browser: Browser, plain_server: ServerProcess):
    page = browser.new_page()
    page.goto(http_url(plain_server))
    outcome = page.evaluate(OPEN_AND_REPORT, [plain_server.url, ["asp.v1", "asp.token.not-a-token"]])
    assert outcome == {"code": 4001, "opened": "asp.v1", "selected": "asp.v1"}


def test_without_dev_mode_the_page_signs_in_with_a_pasted_token(
    browser: Browser, plain_server: ServerProcess, tmp_path: Path
):
    page = browser.new_page()
    page.goto(http_url(plain_server))
    expect(page.locator("#signin-form")).to_be_hidden()
    page.fill("#token", plain_server.token("browser-paste"))
    page.click("#token-form button[type=submit]")
    expect(page.locator("#state")).to_have_attribute("data-state", "open", timeout=10_000)
    expect(page.locator("#status")).to_contain_text("signed in as browser-paste")
    shot(page, "token-sign-in")
