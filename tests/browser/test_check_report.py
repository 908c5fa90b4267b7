"""The `asp check` HTML report in Chromium: summary table on top, rows linking to their case, the
outcome filter hiding rows and sections, wire logs collapsed until opened; offline, from a file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import shot
from tests.conformance.conftest import start
from tests.support.server import SECRET

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real check of a server that skips a seq (ASP-ENV-002): failing cases, a passing one."""
    out = tmp_path_factory.mktemp("check-report")
    server = start(out / "asp.db", module="tests.support.broken_server", ASP_FAULT="seq_gap")
    command = [
        sys.executable, "-m", "asp_cli.main", "check", server.url, "--jwt-secret", SECRET, "--quiet",
        "--cases", "handshake.version_selected,runs.ping_pong", "--html-file", str(out / "report.html"),
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO)
    finally:
        server.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    return out / "report.html"


def test_the_report_reads_summary_first_and_filters_by_outcome(browser: Browser, report_page: Path):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    outside: list[str] = []
    context.route(
        lambda url: not url.startswith("file://"),
        lambda route: (outside.append(route.request.url), route.abort()),
    )
    page = context.new_page()
    page.goto(report_page.as_uri())
    summary = page.locator("#summary")
    expect(summary).to_be_in_viewport()
    rows = summary.locator("tbody tr")
    outcomes = [rows.nth(i).get_attribute("data-outcome") for i in range(rows.count())]
    assert outcomes == ["fail", "fail", "pass"]  # the case and the oracle first, then the pass
    wires = page.locator("details.wire table")
    assert wires.count() >= 2
    expect(wires.first).to_be_hidden()  # collapsed
    shot(page, "check-report")

    page.locator("#filter input[value=pass]").uncheck()
    expect(summary.locator("tr[data-outcome=pass]")).to_be_hidden()
    expect(page.locator("section[data-outcome=pass]")).to_be_hidden()
    expect(summary.locator("tr[data-outcome=fail]").first).to_be_visible()
    page.locator("#filter input[value=pass]").check()
    expect(summary.locator("tr[data-outcome=pass]")).to_be_visible()

    summary.locator("a[href='#runs.ping_pong']").click()
    assert page.evaluate("location.hash") == "#runs.ping_pong"
    passing = page.locator("section[id='handshake.version_selected'] details.case")
    expect(passing.locator("ul.findings")).to_be_hidden()  # a pass starts collapsed
    summary.locator("a[href='#handshake.version_selected']").click()
    expect(passing.locator("ul.findings")).to_be_visible()  # the link opens it
    summary.locator("a[href='#runs.ping_pong']").click()
    section = page.locator("section[id='runs.ping_pong']")
    expect(section).to_be_in_viewport()
    section.locator("details.wire summary").first.click()
    expect(section.locator("details.wire table").first).to_be_visible()
    assert outside == []
    context.close()
