"""Values JSON cannot hold as-is never silence a session or make a conversation unreadable (defect 11)."""

from __future__ import annotations

import asyncio

import pytest

from conformance.context import text_of
from reference_server.sessions import DeliveryLimits, Session
from spec.registry import close_code
from tests.support.server import ServerProcess

CASES = [
    ("what is 2**64", 2**64, "The result is 18446744073709551616."),
    ("what is 3**100 - 1", 3**100 - 1, f"The result is {3**100 - 1}."),
    ("what is 10.0**100 * 10.0**100 * 10.0**100 * 10.0**100", None, "The result is inf."),
    (
        "what is 10.0**99 * 10.0**99 * 10.0**99 * 10.0**99 - 10.0**99 * 10.0**99 * 10.0**99 * 10.0**99",
        None,
        "The result is nan.",
    ),
]


@pytest.mark.parametrize("fixtures", ["true", "false"])
async def test_defect_11_tool_results_beyond_json_numbers_reach_the_client_and_the_history(
    make_server, connect, fixtures: str
):
    server: ServerProcess = make_server(fixtures=fixtures)
    client = await connect(server, user="big-numbers", conversation_id="new")
    conversation = (await client.expect("session"))["conversation_id"]
    for prompt, content, text in CASES:
        await client.send({"type": "message", "content": prompt})
        run = await client.collect_run()
        result = next(e for e in run if e["type"] == "tool_result")
        assert result["content"] == content and result["is_error"] is False, prompt
        assert text_of(run).endswith(text) and run[-1]["finish_reason"] == "stop"
    await client.send({"type": "ping", "id": "alive"})
    assert (await client.expect("pong"))["id"] == "alive"
    await client.close()
    again = await connect(server, user="big-numbers", conversation_id=conversation)
    messages = (await again.expect("history"))["messages"]
    assert [m["content"] for m in messages if m["role"] == "tool"] == [c for _, c, _ in CASES]
    await again.send({"type": "ping", "id": "readable"})
    assert (await again.expect("pong"))["id"] == "readable"


class ExplodingSink:
    """A connection whose send fails in a way the pump does not expect: the synchronous write
    (`at_once`), or the awaited one after the synchronous write declined."""

    def __init__(self, at_once: bool) -> None:
        self.cursor = 0
        self.closed_with: int | None = None
        self.at_once = at_once

    def send_now(self, text: str) -> bool:
        if self.at_once:
            raise ValueError("an unexpected failure while sending")
        return False

    async def send_text(self, text: str) -> None:
        raise ValueError("an unexpected failure while sending")

    async def close(self, code: int, reason: str = "") -> None:
        self.closed_with = code


async def pump_failure(at_once: bool = False) -> tuple[Session, ExplodingSink]:
    """A real Session whose sink fails unexpectedly; returned once the pump reacted (or gave up)."""
    limits = DeliveryLimits(
        replay_window=10,
        send_timeout_s=1,
        max_pending_events=100,
        max_coalesced_chars=100,
        max_event_bytes=65536,
    )
    session = Session(user_id="u", conversation_id="c", capabilities=[], limits=limits)
    sink = ExplodingSink(at_once)
    session.attach(sink)
    session.emit({"type": "pong"})
    for _ in range(500):
        if sink.closed_with is not None:
            break
        await asyncio.sleep(0.01)
    return session, sink


@pytest.mark.parametrize("at_once", [True, False])
async def test_a_failure_inside_the_pump_closes_the_connection_1011_and_ends_the_session(at_once: bool):
    session, sink = await pump_failure(at_once)
    assert sink.closed_with == close_code("internal_error")
    assert session.failed and not session.attached
    await session.close()
