"""The demo page in a real browser: streaming, tools, history, reconnects, supersession, stop."""

from __future__ import annotations

import time

from playwright.sync_api import Browser, expect

from spec.fixtures import fixture_text
from tests.browser.conftest import http_url, send, shot, sign_in
from tests.support.server import ServerProcess

EXPECTED_30 = fixture_text(30)


def test_text_appears_token_by_token(browser: Browser, demo_server: ServerProcess):
    page = browser.new_page()
    sign_in(page, demo_server)
    send(page, "asp-fixture:slow 30 60")
    bubble = page.locator("li.assistant").last
    seen: list[int] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        length = len(bubble.text_content() or "")
        if not seen or length != seen[-1]:
            seen.append(length)
        if length >= len(EXPECTED_30.strip()):
            break
        page.wait_for_timeout(80)
    shot(page, "streaming")
    assert len([n for n in seen if 0 < n < len(EXPECTED_30.strip())]) >= 4, f"lengths seen: {seen}"
    expect(bubble).to_have_attribute("data-streaming", "false", timeout=10_000)
    assert (bubble.text_content() or "").strip() == EXPECTED_30.strip()


def test_a_tool_indicator_appears_while_it_runs_and_resolves(browser: Browser, demo_server: ServerProcess):
    page = browser.new_page()
    sign_in(page, demo_server)
    send(page, "asp-fixture:slow_tool 1500")
    running = page.locator("li.tool[data-status=running]")
    expect(running).to_be_visible(timeout=5_000)
    expect(running).to_contain_text("sleep")
    shot(page, "tool-running")
    done = page.locator("li.tool[data-status=done]")
    expect(done).to_be_visible(timeout=5_000)
    expect(done).to_contain_text('{"slept_ms":1500}')
    shot(page, "tool-done")


def test_a_reload_shows_the_history(browser: Browser, demo_server: ServerProcess):
    page = browser.new_page()
    sign_in(page, demo_server)
    send(page, "calculate 6 * 7")
    expect(page.locator("li.assistant").last).to_contain_text("42", timeout=10_000)
    page.reload()
    expect(page.locator("li.notice", has_text="history restored")).to_be_visible(timeout=10_000)
    expect(page.locator("li.user")).to_have_text(["calculate 6 * 7"])
    expect(page.locator("li.tool[data-status=done]")).to_contain_text("42")
    expect(page.locator("li.assistant").last).to_contain_text("The result is 42.")
    shot(page, "history-after-reload")


def test_a_server_restart_reconnects_and_the_conversation_continues(
    browser: Browser, demo_server: ServerProcess
):
    page = browser.new_page()
    sign_in(page, demo_server)
    send(page, "before the restart")
    expect(page.locator("li.assistant").last).to_contain_text("before the restart", timeout=10_000)
    demo_server.stop()
    expect(page.locator("#state")).to_have_attribute("data-state", "reconnecting", timeout=10_000)
    send(page, "asp-fixture:recall")  # typed while the server is down: queued, not dropped
    shot(page, "reconnecting")
    demo_server.start()
    expect(page.locator("#state")).to_have_attribute("data-state", "open", timeout=30_000)
    expect(page.locator("li.assistant").last).to_contain_text("recall:before the restart", timeout=10_000)
    expect(page.locator("li.user")).to_have_text(["before the restart", "asp-fixture:recall"])
    expect(page.locator("li.error")).to_have_count(0)  # a failed resume after a restart is no error
    shot(page, "reconnected")


def test_a_second_tab_supersedes_the_first_without_a_reconnect_loop(
    browser: Browser, demo_server: ServerProcess
):
    context = browser.new_context()
    first = context.new_page()
    sockets: list[str] = []
    first.on("websocket", lambda ws: sockets.append(ws.url))
    sign_in(first, demo_server, user="two-tabs")
    second = context.new_page()
    second.goto(http_url(demo_server))  # same storage: signs in as the same user
    expect(second.locator("#state")).to_have_attribute("data-state", "open", timeout=10_000)
    expect(first.locator("#state")).to_have_attribute("data-state", "closed", timeout=10_000)
    expect(first.locator("#state")).to_contain_text("4002")
    expect(first.locator("li.notice", has_text="superseded")).to_be_visible()
    first.wait_for_timeout(3_000)  # a loop would reconnect (and supersede the second tab) by now
    assert len(sockets) == 1, sockets
    expect(second.locator("#state")).to_have_attribute("data-state", "open")
    shot(first, "superseded-tab")
    context.close()


def test_the_stop_button_ends_the_run(browser: Browser, demo_server: ServerProcess):
    page = browser.new_page()
    sign_in(page, demo_server)
    send(page, "asp-fixture:slow 200 30")
    expect(page.locator("li.assistant").last).to_contain_text("t3 ", timeout=10_000)
    expect(page.locator("#stop")).to_be_enabled()
    page.click("#stop")
    expect(page.locator("li.notice[data-reason=cancelled]")).to_be_visible(timeout=5_000)
    expect(page.locator("#stop")).to_be_disabled()
    streamed = page.locator("li.assistant").last.text_content() or ""
    assert "t199" not in streamed
    shot(page, "stopped")


def test_an_auth_failure_is_not_retried(browser: Browser, demo_server: ServerProcess):
    page = browser.new_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(http_url(demo_server))
    page.evaluate("localStorage.setItem('asp.token', 'not-a-valid-token')")
    page.reload()
    expect(page.locator("#state")).to_have_attribute("data-state", "closed", timeout=10_000)
    expect(page.locator("#state")).to_contain_text("4001")
    expect(page.locator("li.error", has_text="Not authorised")).to_be_visible()
    page.wait_for_timeout(2_000)
    assert len(sockets) == 1, sockets
    assert "token" not in sockets[0]  # the token travels in the subprotocol, not the URL
    shot(page, "auth-failure")


def test_a_dropped_connection_resumes_mid_run_with_the_whole_text(
    browser: Browser, demo_server: ServerProcess
):
    page = browser.new_page()
    sign_in(page, demo_server)
    send(page, "asp-fixture:slow 30 60")
    bubble = page.locator("li.assistant").last
    expect(bubble).to_contain_text("t5 ", timeout=10_000)
    page.evaluate("window.aspClient._broken('test: simulated network fault')")
    expect(page.locator("li.notice", has_text="stream resumed")).to_be_visible(timeout=10_000)
    expect(bubble).to_have_attribute("data-streaming", "false", timeout=10_000)
    assert (bubble.text_content() or "").strip() == EXPECTED_30.strip()  # no gap, no duplicate
    assert page.evaluate("window.aspClient.state") == "open"
    shot(page, "resumed-mid-run")
