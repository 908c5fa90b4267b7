"""The demo page in a real browser: streaming, tools, history, reconnects, supersession, stop."""

from __future__ import annotations

import time

from playwright.sync_api import Browser, expect

from spec.fixtures import fixture_text
from tests.browser.conftest import http_url, send, shot, sign_in
from tests.support.server import ServerProcess

EXPECTED_30 = fixture_text(30)


def test_text_appears_token_by_token(browser: Browser, shared_demo_server: ServerProcess):
    page = browser.new_page()
    sign_in(page, shared_demo_server, user="streaming")
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


def test_a_tool_indicator_appears_while_it_runs_and_resolves(
    browser: Browser, shared_demo_server: ServerProcess
):
    page = browser.new_page()
    sign_in(page, shared_demo_server, user="tool-indicator")
    send(page, "asp-fixture:slow_tool 1500")
    running = page.locator("li.tool[data-status=running]")
    expect(running).to_be_visible(timeout=5_000)
    expect(running).to_contain_text("sleep")
    shot(page, "tool-running")
    done = page.locator("li.tool[data-status=done]")
    expect(done).to_be_visible(timeout=5_000)
    expect(done).to_contain_text('{"slept_ms":1500}')
    shot(page, "tool-done")


def test_a_reload_shows_the_history(browser: Browser, shared_demo_server: ServerProcess):
    page = browser.new_page()
    sign_in(page, shared_demo_server, user="reload")
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
    """Restarted in the middle of an answer: while offline the badge and the status line name the
    same close code and Stop is disabled; afterwards the partial answer shows once (from the
    history), no caret blinks, and a message typed while offline is answered (issue 15)."""
    page = browser.new_page()
    sign_in(page, demo_server)
    send(page, "before the restart")
    expect(page.locator("li.assistant").last).to_contain_text("before the restart", timeout=10_000)
    send(page, "asp-fixture:slow 400 30")  # 12 s: still streaming when the grace period (3 s) ends
    expect(page.locator("li.assistant").last).to_contain_text("t5 ", timeout=10_000)
    expect(page.locator("#stop")).to_be_enabled()
    demo_server.stop()
    expect(page.locator("#state")).to_have_attribute("data-state", "reconnecting", timeout=10_000)
    expect(page.locator("#stop")).to_be_disabled()
    page.wait_for_function("window.aspClient.attempt >= 3", timeout=20_000)  # several failed attempts
    badge = page.locator("#state").text_content() or ""
    code = page.locator("#status").get_attribute("data-code")
    assert code and badge == f"reconnecting ({code})", (badge, code)
    assert f"connection lost ({code})" in (page.locator("#status").text_content() or "")
    send(page, "asp-fixture:recall")  # typed while the server is down: queued, not dropped
    shot(page, "reconnecting")
    demo_server.start()
    expect(page.locator("#state")).to_have_attribute("data-state", "open", timeout=30_000)
    expect(page.locator("li.assistant").last).to_contain_text("recall:before the restart", timeout=10_000)
    expect(page.locator("li.user")).to_have_text(
        ["before the restart", "asp-fixture:slow 400 30", "asp-fixture:recall"]
    )
    expect(page.locator("li.assistant", has_text="t5 ")).to_have_count(1)  # the partial answer, once
    expect(page.locator("li.assistant[data-streaming=true]")).to_have_count(0)
    expect(page.locator("li.error")).to_have_count(0)  # a failed resume after a restart is no error
    expect(page.locator("#state")).to_have_text("open")
    shot(page, "reconnected")


def test_a_second_tab_supersedes_the_first_without_a_reconnect_loop(
    browser: Browser, shared_demo_server: ServerProcess
):
    context = browser.new_context()
    first = context.new_page()
    sockets: list[str] = []
    first.on("websocket", lambda ws: sockets.append(ws.url))
    sign_in(first, shared_demo_server, user="two-tabs")
    second = context.new_page()
    second.goto(http_url(shared_demo_server))  # same storage: signs in as the same user
    expect(second.locator("#state")).to_have_attribute("data-state", "open", timeout=10_000)
    expect(first.locator("#state")).to_have_attribute("data-state", "closed", timeout=10_000)
    expect(first.locator("#state")).to_contain_text("4002")
    expect(first.locator("li.notice", has_text="superseded")).to_be_visible()
    first.wait_for_timeout(3_000)  # a loop would reconnect (and supersede the second tab) by now
    assert len(sockets) == 1, sockets
    expect(second.locator("#state")).to_have_attribute("data-state", "open")
    shot(first, "superseded-tab")
    context.close()


def test_the_stop_button_ends_the_run(browser: Browser, shared_demo_server: ServerProcess):
    page = browser.new_page()
    sign_in(page, shared_demo_server, user="stop-button")
    send(page, "asp-fixture:slow 200 30")
    expect(page.locator("li.assistant").last).to_contain_text("t3 ", timeout=10_000)
    expect(page.locator("#stop")).to_be_enabled()
    page.click("#stop")
    expect(page.locator("li.notice[data-reason=cancelled]")).to_be_visible(timeout=5_000)
    expect(page.locator("#stop")).to_be_disabled()
    streamed = page.locator("li.assistant").last.text_content() or ""
    assert "t199" not in streamed
    shot(page, "stopped")


def test_an_auth_failure_is_not_retried(browser: Browser, shared_demo_server: ServerProcess):
    page = browser.new_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(http_url(shared_demo_server))
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
    browser: Browser, shared_demo_server: ServerProcess
):
    page = browser.new_page()
    sign_in(page, shared_demo_server, user="dropped")
    send(page, "asp-fixture:slow 30 60")
    bubble = page.locator("li.assistant").last
    expect(bubble).to_contain_text("t5 ", timeout=10_000)
    page.evaluate("window.aspClient._broken('test: simulated network fault')")
    expect(page.locator("li.notice", has_text="stream resumed")).to_be_visible(timeout=10_000)
    expect(bubble).to_have_attribute("data-streaming", "false", timeout=10_000)
    assert (bubble.text_content() or "").strip() == EXPECTED_30.strip()  # no gap, no duplicate
    assert page.evaluate("window.aspClient.state") == "open"
    shot(page, "resumed-mid-run")


def test_text_before_a_tool_call_stops_blinking(browser: Browser, shared_demo_server: ServerProcess):
    page = browser.new_page()
    sign_in(page, shared_demo_server, user="caret")
    send(page, "calculate 6 * 7")
    expect(page.locator("li.assistant").last).to_contain_text("The result is 42.", timeout=10_000)
    bubbles = page.locator("li.assistant")
    expect(bubbles).to_have_count(2)  # the text before the tool call, and the answer after it
    expect(bubbles.first).to_contain_text("Let me calculate that.")
    expect(page.locator("li.assistant[data-streaming=true]")).to_have_count(0)
    shot(page, "tool-call-no-caret")


def test_a_message_sent_during_a_run_waits_for_it(browser: Browser, shared_demo_server: ServerProcess):
    page = browser.new_page()
    sign_in(page, shared_demo_server, user="queue")
    send(page, "asp-fixture:slow 40 30")
    expect(page.locator("li.assistant").last).to_contain_text("t3 ", timeout=10_000)
    expect(page.locator("#send")).to_have_text("Queue")
    send(page, "asp-fixture:text 3")
    expect(page.locator("li.user[data-queued=true]")).to_have_text("asp-fixture:text 3")
    shot(page, "queued-message")
    expect(page.locator("li.assistant")).to_have_count(2, timeout=10_000)
    expect(page.locator("li.assistant").last).to_have_text("t0 t1 t2 ", timeout=10_000)
    expect(page.locator("li.assistant").first).to_contain_text("t39 ")
    order = page.eval_on_selector_all("li.user, li.assistant", "items => items.map(i => i.className)")
    assert order == ["user", "assistant", "user", "assistant"], order  # sent below the first answer
    expect(page.locator("li.user[data-queued=true]")).to_have_count(0)
    expect(page.locator("li.error")).to_have_count(0)  # never run_in_progress
    expect(page.locator("#send")).to_have_text("Send")


def test_the_composer_stays_pinned_after_many_turns(browser: Browser, shared_demo_server: ServerProcess):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    sign_in(page, shared_demo_server, user="pinned")
    for turn in range(16):  # typed at once: they are queued and sent one after another
        send(page, f"asp-fixture:text {turn + 2}")
    expect(page.locator("li.assistant")).to_have_count(16, timeout=30_000)
    expect(page.locator("li.assistant").last).to_have_text(fixture_text(17), timeout=10_000)
    order = page.eval_on_selector_all("li.user, li.assistant", "items => items.map(i => i.className)")
    assert order == ["user", "assistant"] * 16, order  # each question above its answer
    composer = page.locator("#composer").bounding_box()
    assert composer and composer["y"] >= 0 and composer["y"] + composer["height"] <= 800, composer
    sizes = page.evaluate(
        "({page: document.documentElement.scrollHeight, view: innerHeight,"
        " list: document.getElementById('transcript').scrollHeight,"
        " box: document.getElementById('transcript').clientHeight})"
    )
    assert sizes["page"] <= sizes["view"] and sizes["list"] > sizes["box"], sizes  # the transcript scrolls
    last = page.locator("li.assistant").last.bounding_box()
    assert last and last["y"] + last["height"] <= composer["y"], (last, composer)  # followed to the end
    shot(page, "pinned-composer-1280x800")


def test_a_375px_screen_has_no_sideways_scroll_and_one_line_buttons(
    browser: Browser, shared_demo_server: ServerProcess
):
    page = browser.new_page(viewport={"width": 375, "height": 740})
    page.goto(http_url(shared_demo_server))
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    sign_in(page, shared_demo_server, user="narrow-screen-user")
    send(page, "calculate 6 * 7")
    expect(page.locator("li.assistant").last).to_contain_text("42", timeout=10_000)
    send(page, "asp-fixture:bulk 1 300")  # a 299-letter word must wrap, not widen the page
    expect(page.locator("li.assistant")).to_have_count(3, timeout=10_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    heights = {b: page.locator(b).bounding_box()["height"] for b in ["#signout", "#send", "#stop"]}  # type: ignore[index]
    assert max(heights.values()) - min(heights.values()) <= 2, heights  # "Sign out" on one line
    shot(page, "chat-375px")


def test_the_sign_in_form_is_aligned(browser: Browser, shared_demo_server: ServerProcess):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(http_url(shared_demo_server))
    field = page.locator("#username").bounding_box()
    button = page.locator("#signin-form button[type=submit]").bounding_box()
    assert field and button
    aligned = abs(field["y"] - button["y"]) <= 2 and abs(field["height"] - button["height"]) <= 2
    assert aligned, (field, button)
    assert button["x"] > field["x"] + field["width"]  # side by side
    shot(page, "sign-in-1280x800")


def test_no_request_of_the_page_fails(browser: Browser, shared_demo_server: ServerProcess):
    page = browser.new_page()
    failed: list[str] = []
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    page.on("requestfailed", lambda request: failed.append(request.url))
    sign_in(page, shared_demo_server, user="favicon")
    response = page.request.get(http_url(shared_demo_server) + "favicon.ico")
    assert response.status == 200 and response.headers["content-type"].startswith("image/svg+xml")
    page.wait_for_timeout(500)
    assert failed == []


def test_a_queued_message_is_sent_whether_its_run_ends_before_or_after_a_reconnect(
    browser: Browser, shared_demo_server: ServerProcess
):
    page = browser.new_page()
    sign_in(page, shared_demo_server, user="queue-across-drop")
    # 20 tokens 40 ms apart: after "t1 " the run has 0.7 s left for the next message to be queued behind
    # it (with 12 tokens, 0.4 s, a CI run once sent it after the run had ended: nothing to queue behind)
    send(page, "asp-fixture:slow 20 40")
    expect(page.locator("li.assistant").last).to_contain_text("t1 ", timeout=10_000)
    send(page, "asp-fixture:recall")
    expect(page.locator("li.user[data-queued=true]")).to_have_count(1)
    # away for 1.5 s (no jitter): the run (0.8 s) ends meanwhile and comes back in the history
    page.evaluate("window.aspClient.random = () => 1; window.aspClient.backoff.baseMs = 1500")
    page.evaluate("window.aspClient._broken('test: simulated network fault')")
    expect(page.locator("li.assistant").last).to_have_text("recall:asp-fixture:slow 20 40", timeout=15_000)
    expect(page.locator("li.user[data-queued=true]")).to_have_count(0)
    expect(page.locator("li.error")).to_have_count(0)
    expect(page.locator("li.assistant", has_text="t19 ")).to_have_count(1)  # the first answer, once
