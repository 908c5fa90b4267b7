"""`asp check` against the minimal server in every legal configuration of the matrix.

Each cell starts the minimal server with one configuration and runs the whole kit against it
(the kit's `run_check`, as `asp check URL --jwt-secret S` does). A correct server in a legal
configuration must get no failure, no warning and no harness error; each cell also names the
cases that prove its point passed (the idle case with a 1 s idle timeout, ...).

A failure the spec shows to be the kit's fault is listed in `KIT_DEFECTS` with the reading of
the spec that proves it; the cells it affects are strict xfails raising `KitDefect`, so they turn
red the day the kit is fixed, and any other failure in those cells still fails the test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from conformance.options import CheckOptions
from conformance.outcomes import Outcome
from conformance.report.model import Report
from conformance.runner import run_check
from tests.examples.conftest import MinimalServer
from tests.support.server import SECRET

# The server's own defaults, which are the values the spec's examples use: the "spec defaults".
SPEC_DEFAULTS = {
    "ASP_MAX_CONNECTIONS": "100",
    "ASP_HEARTBEAT_INTERVAL_MS": "15000",
    "ASP_IDLE_TIMEOUT_MS": "60000",
    "ASP_RATE_LIMIT_MESSAGES": "20",
    "ASP_RATE_LIMIT_WINDOW_MS": "60000",
    "ASP_MAX_MESSAGE_BYTES": "65536",
    "ASP_MAX_EVENT_BYTES": "1048576",
    "ASP_REPLAY_WINDOW": "1000",
    "ASP_SESSION_TTL_MS": "60000",
    "ASP_FIXTURES": "true",
    "ASP_TOKEN_DELAY_MS": "0",
}

# Outcomes that a correct server must never get.
BAD = {Outcome.FAIL, Outcome.WARNING, Outcome.HARNESS_ERROR, Outcome.STALE_BASELINE}


class KitDefect(Exception):
    """The only failures of a cell are known defects of the kit (see KIT_DEFECTS)."""


# case id -> why its verdict on this server is wrong, by the spec's own words.
KIT_DEFECTS: dict[str, str] = {}

IDLE_CASES = (
    "heartbeats.idle_timeout",
    "heartbeats.pings_keep_alive",
    "heartbeats.control_frames_do_not_count",
    "heartbeats.no_idle_close_during_run",
    "heartbeats.idle_counts_from_run_end",
)
FIXTURE_CASES = (
    "runs.ping_during_run",
    "runs.one_at_a_time",
    "runs.deltas_rebuild_the_text",
    "runs.streams_incrementally",
    "runs.model_error",
    "runs.cancel",
    "runs.cancel_names_another_run",
    "tools.call_and_result",
    "tools.failure",
    "tools.cancel_answers_open_calls",
    "duplicates.superseded_run_is_stored",
    "history.agent_sees_earlier_turns",
    "history.disconnect_mid_run_loses_nothing",
    "history.layout",
    "resume.replays_then_continues",
    "resume.refused_after_a_message",
    "limits.rate_limit",
    "limits.event_size",
)


@dataclass(frozen=True)
class Cell:
    settings: dict[str, str]
    must_pass: tuple[str, ...]  # the cases that prove the point of this configuration
    # Cases this configuration rightly cannot run: with the 60 s idle timeout of the spec
    # defaults, the idle cases exceed the kit's default --max-wait.
    untestable: tuple[str, ...] = IDLE_CASES
    kit_defects: tuple[str, ...] = ()  # cases KIT_DEFECTS says the kit judges wrongly here
    on_the_wire: str = ""  # text some frame the kit received must contain


CELLS: dict[str, Cell] = {
    "spec-defaults": Cell(
        {},
        ("runs.cancel", "limits.connection_limit", "handshake.unsupported_version", "auth.unconfigured_alg"),
    ),
    "idle-1s": Cell({"ASP_IDLE_TIMEOUT_MS": "1000"}, IDLE_CASES, untestable=()),
    "replay-window-4": Cell(
        {"ASP_REPLAY_WINDOW": "4"}, ("resume.refused_for_unknown_sessions", "resume.replays_then_continues")
    ),
    "minimal-session": Cell(
        {"ASP_MINIMAL_SESSION": "true"},
        ("handshake.version_selected", "runs.cancel"),
        untestable=(*IDLE_CASES, "limits.connection_limit"),  # max_connections is not announced
    ),
    "rate-5-per-minute": Cell(
        {"ASP_RATE_LIMIT_MESSAGES": "5", "ASP_RATE_LIMIT_WINDOW_MS": "60000"}, ("limits.rate_limit",)
    ),
    "vendor-extensions": Cell(
        {"ASP_VENDOR_EXTENSIONS": "true"},
        ("runs.message_starts_a_run", "tools.failure"),
        on_the_wire='"type":"x-minimal.usage"',  # a vendor event naming a completed run (ASP-EXT-004)
    ),
    "max-message-1024": Cell({"ASP_MAX_MESSAGE_BYTES": "1024"}, ("limits.frame_size",)),
    "no-fixtures": Cell(
        {"ASP_FIXTURES": "false"}, ("runs.message_starts_a_run",), untestable=(*IDLE_CASES, *FIXTURE_CASES)
    ),
}


def _param(name: str) -> object:
    defects = CELLS[name].kit_defects
    if not defects:
        return name
    reason = "; ".join(f"{case}: {KIT_DEFECTS[case]}" for case in defects)
    return pytest.param(name, marks=pytest.mark.xfail(strict=True, raises=KitDefect, reason=reason))


def _summary(report: Report) -> dict[str, tuple[str, str]]:
    return {r.case_id: (r.outcome.value, r.reason[:200]) for r in report.results if r.outcome != Outcome.PASS}


@pytest.mark.parametrize("name", [_param(name) for name in CELLS])
async def test_asp_check_passes_the_minimal_server(name: str, tmp_path: Path):
    cell = CELLS[name]
    server = MinimalServer(database=tmp_path / "asp.db", settings={**SPEC_DEFAULTS, **cell.settings})
    server.start()
    try:
        # The minimal server takes HS256 tokens only (its README): the alg clause of ASP-AUTH-012 runs.
        report = await run_check(CheckOptions(url=server.url, jwt_secret=SECRET, jwt_algorithms=["HS256"]))
    finally:
        server.stop()
    outcomes = {r.case_id: r.outcome for r in report.results}
    bad = {case for case, outcome in outcomes.items() if outcome in BAD}
    unexplained = bad - set(cell.kit_defects)
    assert not unexplained, _summary(report)
    assert not [case for case in cell.must_pass if outcomes.get(case) != Outcome.PASS], _summary(report)
    untestable = {case for case, outcome in outcomes.items() if outcome == Outcome.UNTESTABLE}
    assert untestable == set(cell.untestable), _summary(report)
    assert all(r.reason for r in report.results if r.outcome == Outcome.UNTESTABLE)
    received = (f.get("text") or "" for r in report.results for t in r.transcripts for f in t)
    assert any(cell.on_the_wire in text for text in received)
    if bad:
        raise KitDefect(f"{sorted(bad)}: {_summary(report)}")
