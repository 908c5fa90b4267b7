"""Fixtures do exactly what spec/registry.yaml says (ASP-CAP-004), whatever the server's pace."""

from __future__ import annotations

import time

import pytest

from conformance.context import text_of
from spec.fixtures import fixture_text, text_tokens
from tests.support.server import ServerProcess

TOKEN_DELAY_MS = 200  # a slow offline model: fixtures with their own pace must ignore it


@pytest.fixture(scope="module")
def paced(tmp_path_factory: pytest.TempPathFactory):
    database = tmp_path_factory.mktemp("fixtures") / "asp.db"
    process = ServerProcess(database=database, settings={"ASP_TOKEN_DELAY_MS": str(TOKEN_DELAY_MS)}).start()
    yield process
    process.stop()


async def run(server: ServerProcess, connect, prompt: str, user: str) -> tuple[list[dict], float]:
    client = await connect(server, user=user, conversation_id="new")
    await client.expect("session")
    await client.send({"type": "message", "content": prompt})
    started = time.monotonic()
    events = await client.collect_run(timeout=30)
    return events, time.monotonic() - started


async def test_defect_10_bulk_is_never_paced(paced: ServerProcess, connect):
    events, took = await run(paced, connect, "asp-fixture:bulk 200 10", "fx-bulk")
    assert text_of(events) == ("b" * 9 + " ") * 200
    assert took < 2  # paced at the server's 200 ms per token it would take 40 s


async def test_slow_sends_its_first_token_at_once_then_one_every_ms(paced: ServerProcess, connect):
    client = await connect(paced, user="fx-slow", conversation_id="new")
    await client.expect("session")
    pace_s = 1.5  # long enough to tell "at once" from "after MS" on a loaded machine
    await client.send({"type": "message", "content": f"asp-fixture:slow 3 {int(pace_s * 1000)}"})
    started = await client.expect("run_started")
    sent = time.monotonic()
    first = await client.expect("text_delta")
    first_at = time.monotonic() - sent
    run = [started, first, *await _rest_of_run(client, started["run_id"])]
    took = time.monotonic() - sent
    assert first["delta"] == "t0 " and first_at < pace_s  # the first token does not wait for the pace
    assert [e["delta"] for e in run if e["type"] == "text_delta"] == text_tokens(3)
    assert 2 * pace_s * 0.95 <= took < 2 * pace_s + 5  # (N-1) * MS


async def _rest_of_run(client, run_id: str) -> list[dict]:
    events = []
    while True:
        event = await client.expect(lambda e: e.get("run_id") == run_id, 10)
        events.append(event)
        if event["type"] == "complete":
            return events


@pytest.mark.parametrize(
    "prompt,calls,text",
    [
        ("asp-fixture:tool", [("add", {"a": 2, "b": 3}, 5, False)], "The sum is 5."),
        ("asp-fixture:slow_tool 50", [("sleep", {"ms": 50}, {"slept_ms": 50}, False)], "Done."),
        ("asp-fixture:tool_error", [("fail", {}, str, True)], "The tool failed."),
    ],
)
async def test_tool_fixtures_call_exactly_that_tool_with_no_text_before(
    server: ServerProcess, connect, prompt: str, calls: list, text: str
):
    events, _ = await run(server, connect, prompt, f"fx-{prompt[12:20]}")
    kinds = [e["type"] for e in events]
    assert kinds.index("tool_call") < kinds.index("tool_result") < kinds.index("text_delta")
    assert "text_delta" not in kinds[: kinds.index("tool_call")]  # no text before the call
    call = next(e for e in events if e["type"] == "tool_call")
    result = next(e for e in events if e["type"] == "tool_result")
    ((name, arguments, content, is_error),) = calls
    assert (call["name"], call["arguments"], result["is_error"]) == (name, arguments, is_error)
    assert isinstance(result["content"], str) if content is str else result["content"] == content
    if content == 5:
        assert type(result["content"]) is int  # the JSON number 5, not 5.0
    assert text_of(events) == text and events[-1]["finish_reason"] == "stop"


async def test_text_0_is_a_run_without_text(server: ServerProcess, connect):
    events, _ = await run(server, connect, "asp-fixture:text 0", "fx-text0")
    assert [e["type"] for e in events] == ["run_started", "complete"]
    assert events[-1]["finish_reason"] == "stop"


async def test_model_error_fails_after_t0_with_the_runs_ids(server: ServerProcess, connect):
    events, _ = await run(server, connect, "asp-fixture:model_error", "fx-model-error")
    error = next(e for e in events if e["type"] == "error")
    assert text_of(events) == "t0 "
    assert (error["code"], error["run_id"], error["message_id"]) == (
        "model_error",
        events[0]["run_id"],
        events[0]["message_id"],
    )
    assert events[-1]["finish_reason"] == "error"


@pytest.mark.parametrize(
    "prompt",
    [
        "asp-fixture:bulk 5 0",
        "asp-fixture:bulk 0 5",
        "asp-fixture:text 100001",
        "asp-fixture:slow 3 60001",
        "asp-fixture:text",
        "asp-fixture:text 3 4",
        "asp-fixture:tool 1",
        "asp-fixture:nonsense",
        "asp-fixture:text 99999999999999999999",
        " asp-fixture:text 3",
    ],
)
async def test_a_form_that_is_not_a_fixture_is_an_ordinary_message(
    server: ServerProcess, connect, prompt: str
):
    events, _ = await run(server, connect, prompt, "fx-ordinary")
    assert text_of(events).startswith("You said:") and events[-1]["finish_reason"] == "stop"


async def test_a_fixture_answer_does_not_depend_on_earlier_turns(server: ServerProcess, connect):
    client = await connect(server, user="fx-turns", conversation_id="new")
    await client.expect("session")
    for prompt in (
        "hello",
        "asp-fixture:tool",
        "asp-fixture:text 3",
        "calculate 1 + 1",
        "asp-fixture:text 3",
    ):
        await client.send({"type": "message", "content": prompt})
        run_events = await client.collect_run()
        if prompt == "asp-fixture:text 3":
            assert text_of(run_events) == fixture_text(3)
