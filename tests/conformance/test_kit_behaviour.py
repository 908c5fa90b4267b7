"""How the kit judges: gating, never a silent skip, baselines, harness errors, the pytest plugin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conformance.credentials import Credentials
from conformance.options import CheckOptions
from conformance.outcomes import Outcome
from conformance.registry import CASES, Case, all_cases
from conformance.runner import run_case, run_check
from tests.conformance.conftest import options, start
from tests.support.server import SECRET, ServerProcess


async def test_without_fixtures_or_a_secret_cases_are_untestable_with_reasons_never_skipped(tmp_path: Path):
    server = start(tmp_path / "asp.db", ASP_FIXTURES="false")
    try:
        token = server.token("only-user")
        report = await run_check(
            CheckOptions(url=server.url, tokens=[token], include=["auth", "runs", "tools"])
        )
    finally:
        server.stop()
    by_id = {r.case_id: r for r in report.results}
    assert by_id["auth.expired_token"].outcome == Outcome.UNTESTABLE
    assert "--jwt-secret" in by_id["auth.expired_token"].reason
    assert by_id["tools.call_and_result"].outcome == Outcome.UNTESTABLE
    assert "fixtures" in by_id["tools.call_and_result"].reason
    assert by_id["runs.message_starts_a_run"].outcome == Outcome.PASS
    assert all(r.reason for r in report.results if r.outcome in (Outcome.UNTESTABLE, Outcome.NOT_APPLICABLE))
    assert report.exit_code() == 0


async def test_an_undeclared_capability_makes_its_cases_not_applicable(check_server: ServerProcess):
    report = await run_check(options(check_server, include=["resume.refused_for_unknown_sessions"]))
    assert report.results[0].outcome == Outcome.PASS  # declared here
    terms = report.terms
    assert terms is not None
    stripped = type(terms)(terms.session, terms.limits, terms.capabilities - {"resume"}, terms.user_id)
    result = await run_case(
        CASES["resume.refused_for_unknown_sessions"],
        1,
        options(check_server),
        Credentials(options(check_server)),
        stripped,
    )
    assert result.outcome == Outcome.NOT_APPLICABLE and "resume" in result.reason


async def test_a_baseline_entry_that_now_passes_is_stale_and_fails_the_run(
    check_server: ServerProcess, tmp_path
):
    baseline = tmp_path / "expected.json"
    baseline.write_text(json.dumps({"runs.ping_pong": "was broken once", "ASP-XYZ-999": "never matches"}))
    report = await run_check(options(check_server, include=["runs.ping_pong"], expected_failures=baseline))
    outcomes = {r.case_id: r.outcome for r in report.everything}
    assert outcomes["runs.ping_pong"] == Outcome.STALE_BASELINE
    assert outcomes["baseline.ASP-XYZ-999"] == Outcome.STALE_BASELINE
    assert report.exit_code() == 1


async def test_a_known_failure_in_the_baseline_is_expected_and_the_run_passes(tmp_path: Path):
    server = start(tmp_path / "asp.db", module="tests.support.broken_server", ASP_FAULT="no_pong")
    baseline = tmp_path / "expected.txt"
    baseline.write_text("# pongs are dropped by this server\nASP-MSG-003\n")
    try:
        report = await run_check(options(server, include=["runs.ping_pong"], expected_failures=baseline))
    finally:
        server.stop()
    case = next(r for r in report.results if r.case_id == "runs.ping_pong")
    assert case.outcome == Outcome.EXPECTED_FAILURE
    assert report.exit_code() == 0


async def test_an_exception_in_the_kit_is_a_harness_error_not_a_verdict(check_server: ServerProcess):
    async def broken_case(ctx: object) -> None:
        raise ZeroDivisionError("a bug in the kit")

    case = Case("kit.bug", "a case with a bug", ("ASP-MSG-003",), broken_case)
    report = await run_check(options(check_server, include=["runs.ping_pong"]))
    assert report.terms is not None
    result = await run_case(case, 99, options(check_server), Credentials(options(check_server)), report.terms)
    assert result.outcome == Outcome.HARNESS_ERROR and "ZeroDivisionError" in result.reason


def test_asp_check_exits_1_when_the_server_is_unreachable():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "asp_cli.main",
            "check",
            "ws://127.0.0.1:9/ws/chat",
            "--token",
            "x",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "cannot check" in result.stdout


def test_every_case_cites_catalog_requirements_and_has_a_unique_id():
    assert len(all_cases()) == len({c.id for c in all_cases()}) >= 45


def run_packaged_suite(url: str, selection: str) -> subprocess.CompletedProcess[str]:
    """`pytest --pyargs conformance.suite` as a user runs it, on the cases matching `selection`."""
    suite = ["-m", "pytest", "--pyargs", "conformance.suite", "-q", "-p", "no:cacheprovider"]
    command = [sys.executable, *suite, "--asp-url", url, "--asp-jwt-secret", SECRET, "-k", selection]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_the_pytest_plugin_runs_the_packaged_suite(check_server: ServerProcess):
    result = run_packaged_suite(check_server.url, "handshake or auth or ping_pong")
    assert result.returncode == 0, result.stdout[-2000:]
    assert "12 passed" in result.stdout, result.stdout[-500:]


def test_the_pytest_plugin_fails_a_broken_server_with_the_requirement(tmp_path: Path):
    server = start(tmp_path / "asp.db", module="tests.support.broken_server", ASP_FAULT="no_pong")
    try:
        result = run_packaged_suite(server.url, "ping_pong")
    finally:
        server.stop()
    assert result.returncode == 1 and "ASP-MSG-003" in result.stdout
