"""The kit never breaks on a hostile server: a bounded sample of `python -m conformance.fuzz`, and
one regression test per crash the fuzz found (each raised before its fix)."""

from __future__ import annotations

import asyncio
import json

import pytest

from conformance.context import envelope_problem
from conformance.fuzz import hostile_server, run
from conformance.options import CheckOptions
from conformance.outcomes import Outcome
from conformance.report.model import Report
from conformance.runner import run_check
from conformance.wire import Transcript, take_frame
from spec.oracle import Oracle
from tests.support.events import session_event

SESSION = session_event()


def test_a_bounded_sample_of_hostile_frames_never_breaks_the_kit() -> None:
    """3,000 frames in-process and 200 over a real socket: no exception, a verdict for each."""
    tally, figures = run(frames=3_000, seed=11, per_connection=200, socket_frames=200)
    assert tally.exceptions == 0, "\n".join(tally.first_errors)
    assert tally.not_events == 0
    assert tally.frames >= 3_000
    assert tally.judged == tally.frames  # every frame, in-process and over the socket, judged
    assert tally.verdicts["socket:clean"] > 0  # the socket frames reached the oracle
    assert {"binary", "invalid_utf8", "huge", "deep", "wrong_type", "seq_backwards"} <= set(tally.kinds)
    assert figures["peak_traced_mib"] < 256


def _session_then(*events: dict[str, object]) -> list[str]:
    oracle, transcript = Oracle(), Transcript()
    take_frame(json.dumps(SESSION), oracle, transcript)
    found: list[str] = []
    for event in events:
        before = len(oracle.violations)
        take_frame(json.dumps(event), oracle, transcript)
        found += [v.requirement for v in oracle.violations[before:]]
    return found


def test_a_list_or_object_as_run_id_is_a_schema_violation_not_a_crash() -> None:
    """Was: TypeError unhashable type 'list' in the machine's run sets."""
    found = _session_then(
        {"type": "run_started", "seq": 2, "run_id": ["x"], "message_id": "m", "conversation_id": "conv_1"},
        {"type": "text_delta", "seq": 3, "run_id": {"a": 1}, "delta": "t"},
        {"type": "complete", "seq": 4, "run_id": [], "finish_reason": "stop"},
    )
    assert "ASP-ENV-001" in found


def test_a_list_as_tool_call_id_is_a_schema_violation_not_a_crash() -> None:
    found = _session_then(
        {"type": "run_started", "seq": 2, "run_id": "r", "message_id": "m", "conversation_id": "conv_1"},
        {"type": "tool_call", "seq": 3, "run_id": "r", "tool_call_id": [1], "name": "f", "args": {}},
        {"type": "tool_result", "seq": 4, "run_id": "r", "tool_call_id": {}, "content": 1, "is_error": False},
    )
    assert "ASP-ENV-001" in found


def test_json_nested_past_the_parser_is_unjudged_not_a_crash() -> None:
    """Was: RecursionError out of json.loads. The spec sets no depth limit: no violation, a note."""
    oracle, transcript = Oracle(), Transcript()
    event = take_frame('{"type": "pong", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", oracle, transcript)
    assert event is not None and event["type"] == "<unparsable>"
    assert oracle.violations == [] and len(oracle.unjudged) == 1


def test_nan_and_infinity_are_not_json() -> None:
    """Was: accepted (Python's json extension) as a number; RFC 8259 has no NaN."""
    oracle = Oracle()
    oracle.feed_text('{"type": "pong", "seq": NaN}')
    assert [v.requirement for v in oracle.violations] == ["ASP-TRN-001"]


def test_an_integer_past_the_digit_limit_is_still_json() -> None:
    """Was: ValueError (int max str digits) read as "not JSON"; JSON has no digit limit."""
    oracle = Oracle()
    oracle.feed_text('{"type": "pong", "seq": ' + "9" * 20_000 + "}")
    assert "ASP-TRN-001" not in [v.requirement for v in oracle.violations]


@pytest.mark.slow
def test_asp_check_against_a_hostile_server_ends_every_case_in_a_verdict() -> None:
    """A server answering every message with hostile frames: each case fails with a requirement,
    none is a harness error (the kit's own crash), the run exits 1."""

    async def check() -> Report:
        async with hostile_server(seed=3) as url:
            options = CheckOptions(
                url=url,
                jwt_secret="hostile-secret-hostile-secret-hostile",
                timeout_multiplier=0.3,
                max_wait_s=5,
                include=["runs", "tools", "errors", "resume"],
            )
            return await run_check(options)

    report = asyncio.run(check())
    outcomes = {r.case_id: r.outcome for r in report.results}
    assert outcomes and Outcome.HARNESS_ERROR not in outcomes.values(), outcomes
    assert all(r.outcome != Outcome.FAIL or r.failed_requirements for r in report.results)
    assert report.exit_code() == 1


def test_an_awaited_event_a_case_cannot_use_is_a_finding_not_a_crash() -> None:
    """Was: KeyError 'run_id' out of CaseContext.run on a run_started without one (a harness error,
    found by the hostile-server check). Now the case fails ASP-ENV-001 with what is missing."""
    assert envelope_problem({"type": "run_started", "seq": 2, "message_id": "m", "conversation_id": "c"}) == (
        "run_started without run_id"
    )
    assert "seq" in str(envelope_problem({"type": "pong", "seq": "2"}))
    assert "run_id" in str(
        envelope_problem(
            {"type": "error", "seq": 3, "code": "x", "message": "m", "retryable": False, "run_id": ["r"]}
        )
    )
    assert envelope_problem({"type": "pong", "seq": 4}) is None
    assert envelope_problem({"type": "x-vendor"}) is None  # the oracle judges what the kit does not know
