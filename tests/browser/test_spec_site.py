"""The spec site as a reader meets it in Chromium: from files, offline, with and without JavaScript."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from spec.catalog import requirements
from spec.site.build import build
from spec.site.sequences import sequences
from tests.browser.conftest import ARTIFACTS, shot

PAGES = {
    "protocol": "index.html",
    "messages": "messages/index.html",
    "message-session": "messages/session.html",
    "sequences": "sequences.html",
    "requirements": "requirements.html",
    "registries": "registries.html",
    "asyncapi": "asyncapi.html",
    "changelog": "changelog.html",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("spec-site") / "site"
    assert build(out).problems == []
    return out


@contextmanager
def open_page(
    browser: Browser, site: Path, path: str, *, width: int = 1280, js: bool = True
) -> Iterator[Page]:
    """A page of the site from its file; any request that is not a file (the site is offline) fails."""
    context = browser.new_context(viewport={"width": width, "height": 900}, java_script_enabled=js)
    outside: list[str] = []

    def refuse(route: Route) -> None:
        outside.append(route.request.url)
        route.abort()

    context.route(lambda url: not url.startswith("file://"), refuse)
    page = context.new_page()
    file, _, fragment = path.partition("#")
    page.goto((site / file).as_uri() + (f"#{fragment}" if fragment else ""))
    try:
        yield page
    finally:
        context.close()
    assert outside == [], f"{path} fetched {outside}"


def test_the_catalog_filter_narrows_the_table(browser: Browser, site: Path) -> None:
    with open_page(browser, site, "requirements.html") as page:
        rows = page.locator("#catalog tbody tr")
        total = len(requirements())
        expect(page.locator("#shown")).to_have_text(f"{total} of {total}")
        page.select_option("select[data-filter=level]", "SHOULD")
        should = sum(1 for r in requirements().values() if r.level == "SHOULD")
        expect(page.locator("#shown")).to_have_text(f"{should} of {total}")
        expect(page.locator("#catalog tbody tr:visible")).to_have_count(should)
        assert set(rows.evaluate_all("rows => rows.filter(r => !r.hidden).map(r => r.dataset.level)")) == {
            "SHOULD"
        }
        page.select_option("select[data-filter=level]", "")
        page.fill("input[data-filter=text]", "ASP-HB-")
        heartbeat = [i for i in requirements() if i.startswith("ASP-HB-")]
        expect(page.locator("#catalog tbody tr:visible")).to_have_count(len(heartbeat))
        shot(page, "spec-site-requirements-filtered")


def test_every_page_reads_without_javascript(browser: Browser, site: Path) -> None:
    for name, path in PAGES.items():
        with open_page(browser, site, path, js=False) as page:
            expect(page.locator("main h1").first).to_be_visible()
            if name == "requirements":
                expect(page.locator("#filters")).to_be_hidden()
                expect(page.locator("#catalog tbody tr:visible")).to_have_count(len(requirements()))
            if name == "sequences":
                diagrams = page.locator("svg.sequence")
                expect(diagrams).to_have_count(len(sequences()))
                for index in range(len(sequences())):
                    box = diagrams.nth(index).bounding_box()
                    assert box is not None and box["height"] > 300 and box["width"] > 600
            shot(page, f"spec-site-{name}")


def test_no_page_scrolls_sideways_on_a_phone(browser: Browser, site: Path) -> None:
    for name, path in PAGES.items():
        with open_page(browser, site, path, width=375) as page:
            width = page.evaluate("document.scrollingElement.scrollWidth")
            assert width <= 375, f"{path} is {width} px wide at 375 px"
            if name in {"protocol", "sequences", "message-session"}:
                shot(page, f"spec-site-375-{name}")


def test_a_requirement_link_lands_on_its_sentence(browser: Browser, site: Path) -> None:
    with open_page(browser, site, "requirements.html#ASP-CAN-001") as page:
        page.click("#ASP-CAN-001 td.id a")
        expect(page).to_have_url(f"{(site / 'index.html').as_uri()}#ASP-CAN-001")
        target = page.locator("a.req-def#ASP-CAN-001")
        expect(target).to_be_in_viewport()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "spec-site-requirement-target.png"))
