"""The lifecycle table executes: clean streams pass, each ordering fault is caught with its ID."""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from spec import EXAMPLES_DIR, SPEC_DIR
from spec.catalog import requirements
from spec.machine import ACTIONS, CHECKS, CONDITIONS, GUARDS, lifecycle
from spec.oracle import Oracle
from spec.schemas import server_event_types

TRANSCRIPTS = EXAMPLES_DIR / "transcripts"
EXPECTED: dict[str, list[str]] = yaml.safe_load((TRANSCRIPTS / "expected.yaml").read_text())

SESSION = {
    "type": "session",
    "seq": 1,
    "protocol_version": "1.0",
    "session_id": "ses_test0000000000000001",
    "conversation_id": "conv_1",
    "user": {"id": "u"},
    "capabilities": ["history", "cancel"],
    "limits": {
        "max_message_bytes": 65536,
        "heartbeat_interval_ms": 1000,
        "idle_timeout_ms": 5000,
        "rate_limit": {"messages": 5, "window_ms": 1000},
        "replay_window": 100,
    },
}


def test_every_name_in_the_table_has_code_and_every_requirement_exists() -> None:
    table = lifecycle()
    for transition in table["transitions"]:
        assert set(transition["from"]) <= set(table["states"])
        assert transition.get("to", "same") in {*table["states"], "same"}
        for guard in transition.get("guards", ()):
            assert guard["guard"] in GUARDS
            assert guard["requirement"] in requirements()
        for action in transition.get("actions", ()):
            assert action in ACTIONS
        if "when" in transition:
            assert transition["when"] in CONDITIONS
        if "violation" in transition:
            assert transition["violation"] in requirements()
        assert set(transition["events"]) <= {*server_event_types(), "x-vendor"}
    for check in table["checks"]:
        assert check["check"] in CHECKS and check["requirement"] in requirements()
    for state in table["states"].values():
        assert state["otherwise"] in requirements()


def test_every_server_event_type_has_a_transition() -> None:
    covered = {event for t in lifecycle()["transitions"] for event in t["events"]}
    assert server_event_types() <= covered


def judge(events: list[dict[str, Any]]) -> list[str]:
    oracle = Oracle()
    for event in events:
        oracle.feed_text(json.dumps(event))
    return [v.requirement for v in oracle.violations]


def test_example_transcripts_give_exactly_their_expected_requirements() -> None:
    assert {p.name for p in TRANSCRIPTS.glob("*.jsonl")} == set(EXPECTED)
    for name, expected in EXPECTED.items():
        oracle = Oracle()
        for line in (TRANSCRIPTS / name).read_text().splitlines():
            oracle.feed_text(line)
        assert sorted({v.requirement for v in oracle.violations}) == sorted(expected), name


# --- generated streams ------------------------------------------------------------------------


@st.composite
def run_events(draw: st.DrawFn, run_id: str) -> list[dict[str, Any]]:
    """One well-formed run: deltas, tool calls answered in some order, interleaved pongs, a complete."""
    events: list[dict[str, Any]] = [
        {"type": "run_started", "run_id": run_id, "message_id": f"m_{run_id}", "conversation_id": "conv_1"}
    ]
    open_calls: list[str] = []
    for step in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["text", "call", "result", "pong"]))
        if kind == "text":
            events.append(
                {"type": "text_delta", "run_id": run_id, "delta": draw(st.text(min_size=1, max_size=5))}
            )
        elif kind == "call":
            call = f"c{step}"
            open_calls.append(call)
            events.append(
                {"type": "tool_call", "run_id": run_id, "tool_call_id": call, "name": "t", "arguments": {}}
            )
        elif kind == "result" and open_calls:
            call = open_calls.pop(draw(st.integers(0, len(open_calls) - 1)))
            events.append(
                {
                    "type": "tool_result",
                    "run_id": run_id,
                    "tool_call_id": call,
                    "content": 1,
                    "is_error": False,
                }
            )
        else:
            events.append({"type": "pong"})
    for call in open_calls:
        events.append(
            {"type": "tool_result", "run_id": run_id, "tool_call_id": call, "content": None, "is_error": True}
        )
    reason = draw(st.sampled_from(["stop", "cancelled", "error", "length"]))
    if reason == "error":
        events.append(
            {"type": "error", "run_id": run_id, "code": "model_error", "message": "m", "retryable": True}
        )
    events.append({"type": "complete", "run_id": run_id, "finish_reason": reason})
    return events


@st.composite
def sessions(draw: st.DrawFn) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [dict(SESSION)]
    for number in range(draw(st.integers(0, 4))):
        events.extend(draw(run_events(f"run_{number}")))
        if draw(st.booleans()):
            events.append({"type": "error", "code": "invalid_json", "message": "m", "retryable": False})
    for seq, event in enumerate(events, start=1):
        event["seq"] = seq
    return events


@settings(max_examples=150, deadline=None)
@given(sessions())
def test_generated_well_formed_sessions_pass(events: list[dict[str, Any]]) -> None:
    assert judge(events) == []


@settings(max_examples=150, deadline=None)
@given(sessions(), st.data())
def test_dropping_any_run_started_or_tool_call_is_caught(
    events: list[dict[str, Any]], data: st.DataObject
) -> None:
    droppable = [
        i
        for i, e in enumerate(events)
        if e["type"] in {"run_started", "tool_call"}
        and any(o.get("run_id") == e["run_id"] and o is not e and o["type"] != "run_started" for o in events)
    ]
    if not droppable:
        return
    index = data.draw(st.sampled_from(droppable))
    mutated = [dict(e) for i, e in enumerate(events) if i != index]
    for seq, event in enumerate(mutated, start=1):
        event["seq"] = seq
    found = set(judge(mutated))
    expected = {"ASP-RUN-001", "ASP-RUN-003"} if events[index]["type"] == "run_started" else {"ASP-TOOL-003"}
    assert found & expected, f"dropping {events[index]} gave {found}"


@settings(max_examples=100, deadline=None)
@given(sessions(), st.data())
def test_any_seq_gap_or_repeat_is_caught(events: list[dict[str, Any]], data: st.DataObject) -> None:
    if len(events) < 2:
        return
    index = data.draw(st.integers(1, len(events) - 1))
    shift = data.draw(st.sampled_from([-1, 1, 2]))
    mutated = [dict(e) for e in events]
    mutated[index]["seq"] += shift
    assert "ASP-ENV-002" in judge(mutated)


def test_a_resume_adopts_a_run_that_began_before_the_resume_point() -> None:
    events = [
        dict(SESSION, capabilities=["resume"]),
        {"type": "resumed", "seq": 2, "session_id": "ses_old", "replay_from": 30, "replay_count": 1},
        {
            "type": "tool_result",
            "seq": 30,
            "run_id": "r9",
            "tool_call_id": "c1",
            "content": 1,
            "is_error": False,
        },
        {"type": "complete", "seq": 31, "run_id": "r9", "finish_reason": "stop"},
        {"type": "text_delta", "seq": 32, "run_id": "r9", "delta": "late"},
    ]
    assert judge(events) == ["ASP-RUN-005"]


def test_a_resume_adopts_a_run_whose_first_replayed_event_is_its_error() -> None:
    """ASP-RES-007: the process running the run died after the client's last_seq; the resumed
    connection gets only the run's error and complete. An error without a run_id adopts nothing."""
    resumed = {"type": "resumed", "seq": 2, "session_id": "ses_old", "replay_from": 30, "replay_count": 0}
    error = {"type": "error", "seq": 30, "code": "internal_error", "message": "lost", "retryable": True}
    error["run_id"] = "r9"
    events = [
        dict(SESSION, capabilities=["resume"]),
        resumed,
        dict(error, message_id="m9"),
        {"type": "complete", "seq": 31, "run_id": "r9", "finish_reason": "error"},
    ]
    assert judge(events) == []
    assert judge([dict(SESSION, capabilities=["resume"]), resumed, dict(error, run_id="r8")]) == []
    unrelated = {k: v for k, v in error.items() if k != "run_id"}
    assert judge([dict(SESSION, capabilities=["resume"]), resumed, unrelated]) == []


def test_the_table_names_every_event_type_once_and_the_vendor_type_apart() -> None:
    table = lifecycle()
    run, session = set(table["run_events"]), set(table["session_events"])
    assert run.isdisjoint(session)
    assert run | session == server_event_types()
    assert table["vendor_event"] not in run | session


def test_the_machine_code_names_no_event_type_the_table_owns() -> None:
    """Rule 1 of the table: every event type the machine treats specially is named in lifecycle.yaml."""
    source = (SPEC_DIR / "machine.py").read_text()
    for kind in (*server_event_types(), lifecycle()["vendor_event"]):
        assert f'"{kind}"' not in source and f"'{kind}'" not in source, kind


def test_a_vendor_event_may_carry_the_run_id_of_a_completed_run() -> None:
    events = [
        dict(SESSION),
        {"type": "run_started", "seq": 2, "run_id": "r1", "message_id": "m1", "conversation_id": "conv_1"},
        {"type": "complete", "seq": 3, "run_id": "r1", "finish_reason": "stop"},
        {"type": "x-acme-usage", "seq": 4, "run_id": "r1", "cost": 3},
        {"type": "run_started", "seq": 5, "run_id": "r2", "message_id": "m2", "conversation_id": "conv_1"},
        {"type": "x-acme-usage", "seq": 6, "run_id": "r1"},
        {"type": "complete", "seq": 7, "run_id": "r2", "finish_reason": "stop"},
    ]
    assert judge(events) == []
