"""No false alarm on a legal configuration: the kinds `asp check` once reported as server faults.

Each test reproduces one kind with the reference server's own settings (or a broken variant that
misses only a SHOULD) and proves the check now passes it, or costs only what the spec says.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance.outcomes import Outcome
from conformance.report.model import Report
from conformance.runner import run_check
from tests.conformance.conftest import options, start
from tests.examples.conftest import MinimalServer
from tests.support.server import SECRET, ServerProcess


async def checked(
    implementation: str, tmp_path: Path, settings: dict[str, str], include: list[str]
) -> Report:
    """The report of `asp check` on the `include`d cases against the reference server ("reference")
    or the one written from the spec alone ("minimal"), started with `settings`, then stopped."""
    server = (
        start(tmp_path / "asp.db", **settings)
        if implementation == "reference"
        else MinimalServer(database=tmp_path / "asp.db", settings=settings).start()
    )
    try:
        return await run_check(options(server, include=include))
    finally:
        server.stop()


SPEC_DEFAULTS = {
    "ASP_IDLE_TIMEOUT_MS": "60000",
    "ASP_HEARTBEAT_INTERVAL_MS": "15000",
    "ASP_RATE_LIMIT_MESSAGES": "20",
    "ASP_RATE_LIMIT_WINDOW_MS": "60000",
    "ASP_SESSION_TTL_MS": "60000",
}


def failures(report: object) -> dict[str, str]:
    return {r.case_id: r.reason for r in report.everything if r.outcome != Outcome.PASS}  # type: ignore[attr-defined]


async def test_an_idle_timeout_of_one_second_is_no_false_alarm(check_server: ServerProcess):
    """A held connection is pinged; nothing the kit holds sits silent past a legal idle timeout
    (once: errors.generated_invalid_input and duplicates.other_users_untouched got 4003 and blamed
    the server; a busy machine, or its --timeout-multiplier, made the pauses longer than 1 s). The
    announced heartbeat (5 s) is longer than the idle timeout here: legal too. The full check of this
    server is tests/conformance/test_check_reference_server.py."""
    assert check_server.settings["ASP_IDLE_TIMEOUT_MS"] == "1000"
    report = await run_check(options(check_server, timeout_multiplier=4, include=["duplicates", "errors"]))
    assert report.exit_code() == 0, failures(report)
    assert failures(report) == {}


async def test_a_replay_window_of_four_is_no_false_alarm(tmp_path: Path):
    """The resume scenario fits the announced replay_window (once: resumed after more than 4 events,
    ignored the server's resume_failed and blamed ASP-RES-001)."""
    server = start(tmp_path / "asp.db", ASP_REPLAY_WINDOW="4")
    try:
        report = await run_check(options(server, include=["resume"]))
    finally:
        server.stop()
    assert report.exit_code() == 0, failures(report)
    outcomes = {r.case_id: r.outcome for r in report.results}
    assert outcomes["resume.replays_then_continues"] == Outcome.PASS


async def test_a_server_holding_deltas_back_misses_only_a_should(tmp_path: Path):
    """Probes sent into a run reach the server while the run is active (once: the kit pinged and
    cancelled after the first delta, which came with complete, and failed ASP-MSG-003 and
    ASP-CAN-001, two MUSTs, for a missed SHOULD). Resume is left out: this variant holds deltas per
    connection, where a resumed session cannot find them."""
    server = start(
        tmp_path / "asp.db", module="tests.support.broken_server", ASP_FAULT="buffers_text_until_complete"
    )
    try:
        report = await run_check(options(server, include=["runs", "tools", "history", "duplicates"]))
    finally:
        server.stop()
    failed = [r.case_id for r in report.everything if r.outcome == Outcome.FAIL]
    assert failed == [], failures(report)
    warned = {f.requirement for r in report.results for f in r.findings if not f.passed}
    assert warned == {"ASP-RUN-009"}, failures(report)
    assert report.exit_code() == 0
    levels = report.compliance()
    assert levels["core"].verdict != "no"
    assert levels["recommended"].verdict == "no" and levels["recommended"].failed == ["ASP-RUN-009"]


@pytest.mark.slow
async def test_spec_defaults_with_max_wait_70_pass_in_about_the_idle_timeout(tmp_path: Path):
    """Spec-default limits, checked with --max-wait 70 as the README says for the idle case: the
    real-time cases run beside the others and size their waits from the announcement (once:
    pings_keep_alive ran into a fixed 90 s case cap and failed ASP-HB-003)."""
    server = ServerProcess(database=tmp_path / "asp.db", settings=SPEC_DEFAULTS).start()
    began = time.monotonic()
    try:
        report = await run_check(options(server, max_wait_s=70))
    finally:
        server.stop()
    took = time.monotonic() - began
    assert report.exit_code() == 0, failures(report)
    outcomes = {r.case_id: r.outcome for r in report.results}
    for realtime in (
        "heartbeats.idle_timeout",
        "heartbeats.pings_keep_alive",
        "heartbeats.control_frames_do_not_count",
        "heartbeats.no_idle_close_during_run",
        "heartbeats.idle_counts_from_run_end",
    ):
        assert outcomes[realtime] == Outcome.PASS, realtime
    assert took < 60 + 35, f"{took:.0f}s: about the idle timeout plus the rest"


# A window that fits the default --max-wait, and two runs in it: the whole rate case in seconds.
SHORT_RATE_WINDOW = {"ASP_RATE_LIMIT_MESSAGES": "2", "ASP_RATE_LIMIT_WINDOW_MS": "4000"}


@pytest.mark.parametrize("implementation", ["reference", "minimal"])
async def test_retry_after_ms_is_waited_out_and_honoured_with_a_short_rate_window(
    implementation: str, tmp_path: Path
):
    """With a rate window that fits --max-wait, limits.rate_limit waits out the retry_after_ms of
    its refusal and sends again: that message starts a run (ASP-LIM-009), on both servers."""
    report = await checked(implementation, tmp_path, SHORT_RATE_WINDOW, ["limits.rate_limit"])
    assert report.exit_code() == 0, failures(report)
    (result,) = report.results
    assert result.outcome == Outcome.PASS
    frames = [f for transcript in result.transcripts for f in transcript]
    sent = [f for f in frames if f["direction"] == "send" and "kit-rate-after" in (f.get("text") or "")]
    text = [(f["direction"], f.get("text") or "") for f in frames]
    started = [t for d, t in text if d == "recv" and '"run_started"' in t and "kit-rate-after" in t]
    assert sent and started, "the message after retry_after_ms was not sent, or started no run"


@pytest.mark.parametrize("implementation", ["reference", "minimal"])
async def test_a_session_ttl_of_zero_is_no_false_alarm(implementation: str, tmp_path: Path):
    """session_ttl_ms 0 is legal (session.json: minimum 0): a session need not be resumable once
    its connection ended, so resume_failed for a session closed before the resume is allowed
    (ASP-RES-003). Once resume.what_a_resume_may_name failed ASP-RES-006 on both servers for it,
    and the announcement of 0 was read as no announcement at all."""
    settings = {"ASP_SESSION_TTL_MS": "0"}
    report = await checked(implementation, tmp_path, settings, ["resume"])
    assert report.exit_code() == 0, failures(report)
    outcomes = {r.case_id: r for r in report.results}
    named = outcomes["resume.what_a_resume_may_name"]
    assert named.outcome == Outcome.UNTESTABLE, failures(report)
    assert "session_ttl_ms (0)" in named.reason
    assert outcomes["resume.refused_for_unknown_sessions"].outcome == Outcome.PASS


async def test_an_untestable_retry_names_the_premise_that_caused_it(tmp_path: Path):
    """With session_ttl_ms 0 and replay_window 2 the minimal server refuses the resume (allowed),
    and the retry's longer run exceeds --max-wait: the reason names the TTL too, not only the
    --max-wait the retry would need (once it named that alone)."""
    settings = {"ASP_SESSION_TTL_MS": "0", "ASP_REPLAY_WINDOW": "2"}
    server = MinimalServer(database=tmp_path / "asp.db", settings=settings).start()
    try:
        report = await run_check(options(server, include=["resume.replays_then_continues"]))
    finally:
        server.stop()
    (result,) = report.results
    assert result.outcome == Outcome.UNTESTABLE, failures(report)
    assert "--max-wait" in result.reason and "session_ttl_ms (0)" in result.reason, result.reason


@pytest.mark.parametrize("implementation", ["reference", "minimal"])
async def test_one_run_a_window_is_no_false_alarm(implementation: str, tmp_path: Path):
    """rate_limit of 1 message per 5 s is legal: a message sent during a run still gets
    run_in_progress, which a 1.1 server checks before the rate (ASP-LIM-009). Once the kit's own
    pace held the second message of runs.one_at_a_time back until the window had room, by then the
    first run had ended, and the run the server rightly started failed ASP-RUN-002."""
    settings = {"ASP_RATE_LIMIT_MESSAGES": "1", "ASP_RATE_LIMIT_WINDOW_MS": "5000"}
    report = await checked(implementation, tmp_path, settings, ["runs.one_at_a_time"])
    assert report.exit_code() == 0, failures(report)
    (result,) = report.results
    assert result.outcome == Outcome.PASS, failures(report)
    received = [f.get("text") or "" for t in result.transcripts for f in t if f["direction"] == "recv"]
    assert any('"run_in_progress"' in text for text in received)


@pytest.mark.parametrize("implementation", ["reference", "minimal"])
async def test_a_connection_limit_of_one_judges_one_users_connections(implementation: str, tmp_path: Path):
    """max_connections 1 is legal (session.json: minimum 1). One user's newer connection takes the
    slot of the one it supersedes (ASP-LIM-007), so the cases whose connections supersede each
    other, or that hold one at a time, get a verdict; once they were untestable ("holds 2
    connections at once"). Only the cases holding two users' connections at once cannot run."""
    settings = {"ASP_MAX_CONNECTIONS": "1"}
    report = await checked(implementation, tmp_path, settings, ["duplicates", "session.foreign_conversation"])
    assert report.exit_code() == 0, failures(report)
    outcomes = {r.case_id: r.outcome for r in report.results}
    assert outcomes == {
        "duplicates.newer_supersedes_older": Outcome.PASS,
        "duplicates.superseded_run_is_stored": Outcome.PASS,
        "session.foreign_conversation": Outcome.PASS,
        "duplicates.other_users_untouched": Outcome.UNTESTABLE,
    }, failures(report)


@pytest.mark.parametrize("implementation", ["reference", "minimal"])
async def test_a_replay_window_of_two_still_judges_the_replay(implementation: str, tmp_path: Path):
    """replay_window 2 is legal (session.json: minimum 0): the run the resume joins is paced at one
    token per planned reconnect, so the replay is judged (once untestable: "leaves no room to
    resume a run")."""
    settings = {"ASP_REPLAY_WINDOW": "2"}
    report = await checked(implementation, tmp_path, settings, ["resume.replays_then_continues"])
    assert report.exit_code() == 0, failures(report)
    (result,) = report.results
    assert result.outcome == Outcome.PASS, failures(report)


async def test_the_smallest_outbox_bound_is_no_false_alarm(tmp_path: Path):
    """ASP_MAX_PENDING_EVENTS 10 is legal. The reference server once closed the kit 4004 in the
    case's burst of deltas, which gathered in one coalescing window though the kit read every frame
    at once, and the kit blamed ASP-RUN-004 ("closed before complete"). Now the server counts the
    events it will send (merged deltas as one) and the case passes; a 4004 close a server still
    makes is no verdict on the run (CaseContext.kept_up: the kit cannot prove it read in time)."""
    server = start(tmp_path / "asp.db", ASP_MAX_PENDING_EVENTS="10")
    try:
        report = await run_check(options(server, include=["runs.deltas_rebuild_the_text"]))
    finally:
        server.stop()
    assert report.exit_code() == 0, failures(report)
    (result,) = report.results
    assert result.outcome == Outcome.PASS, failures(report)


# A soft limit of open files under the sockets limits.connection_limit holds against this server
# (max_connections + 6): macOS's default soft limit is 256.
KIT_FILES = 256


@pytest.mark.parametrize("hard", ["kept", "at_the_soft_limit"])
def test_the_kits_own_limit_of_open_files_is_no_false_alarm(hard: str, tmp_path: Path):
    """max_connections 300 is legal; a kit whose process may open fewer files than the case's
    sockets cannot fill it. Once each connect past the limit failed with EMFILE inside the kit and
    was blamed on the server (ASP-TRN-002, ASP-LIM-001, ASP-LIM-008). Now the kit raises its soft
    limit toward the hard one, and when the hard one is too low the case is untestable, saying so."""
    _, hard_now = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard_now != resource.RLIM_INFINITY and hard_now < 1024:
        pytest.skip(f"this machine's hard limit of open files is {hard_now}")
    limit = (KIT_FILES, KIT_FILES if hard == "at_the_soft_limit" else hard_now)
    server = start(tmp_path / "asp.db", ASP_MAX_CONNECTIONS="300")
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "asp_cli.main",
                "check",
                server.url,
                "--cases",
                "limits.connection_limit",
                "--json-file",
                str(tmp_path / "report.json"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "ASP_CHECK_JWT_SECRET": SECRET},
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limit),
        )
    finally:
        server.stop()
    (case,) = json.loads((tmp_path / "report.json").read_text())["cases"]
    assert result.returncode == 0, result.stdout[-2000:]
    if hard == "kept":
        assert case["outcome"] == "pass", case["reason"]
    else:
        assert case["outcome"] == "untestable" and "ulimit -n" in case["reason"], case["reason"]
