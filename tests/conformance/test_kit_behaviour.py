"""How the kit judges: gating, never a silent skip, baselines, harness errors, the pytest plugin."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from conformance.context import CaseContext
from conformance.credentials import Credentials
from conformance.options import CheckOptions
from conformance.outcomes import Outcome, blocks
from conformance.registry import CASES, Case, all_cases
from conformance.runner import RETRY_STRETCH, probe, run_case, run_check
from conformance.terms import ServerTerms
from tests.conformance.conftest import options, start
from tests.support.faults import panel_url
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


async def test_a_known_failure_in_the_baseline_is_expected_and_the_run_passes(
    panel: ServerProcess, tmp_path: Path
):
    baseline = tmp_path / "expected.txt"
    baseline.write_text("# pongs are dropped by this server\nASP-MSG-003\n")
    report = await run_check(
        options(
            panel,
            url=panel_url(panel.url, "no_pong"),
            include=["runs.ping_pong"],
            expected_failures=baseline,
            timeout_multiplier=0.3,
        )
    )
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
    command += ["--asp-timeout-multiplier", "0.3"]  # a server on loopback
    command += ["--asp-jwt-algorithms", "HS256"]  # the reference server's only algorithm (README)
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_the_pytest_plugin_runs_the_packaged_suite(check_server: ServerProcess):
    result = run_packaged_suite(check_server.url, "handshake or auth or ping_pong")
    assert result.returncode == 0, result.stdout[-2000:]
    selected = [c for c in all_cases() if any(w in c.id for w in ("handshake", "auth", "ping_pong"))]
    assert f"{len(selected)} passed" in result.stdout, result.stdout[-500:]


def test_the_pytest_plugin_fails_a_broken_server_with_the_requirement(panel: ServerProcess):
    result = run_packaged_suite(panel_url(panel.url, "no_pong"), "ping_pong")
    assert result.returncode == 1 and "ASP-MSG-003" in result.stdout


async def _terms(server: ServerProcess) -> ServerTerms:
    return await probe(options(server), Credentials(options(server)))


async def test_a_case_budget_grows_with_its_waits_and_only_the_kits_stall_exhausts_it(
    check_server: ServerProcess,
):
    terms = await _terms(check_server)
    tight = options(check_server, timeout_multiplier=0.05)  # the kit's slack: 0.5 s

    async def waits_long(ctx: CaseContext) -> None:
        client, _ = await ctx.connect()
        await ctx.sleep(1.5, "a long wait the case asked for")
        await ctx.alive(client, "ASP-MSG-003")

    async def stalls(ctx: CaseContext) -> None:
        await ctx.connect()
        await asyncio.sleep(1.5)  # not a wait the case declared: the kit itself is stuck

    waited = await run_case(
        Case("kit.waits", "waits", ("ASP-MSG-003",), waits_long), 98, tight, Credentials(tight), terms
    )
    assert waited.outcome == Outcome.PASS, waited.reason
    stalled = await run_case(
        Case("kit.stalls", "stalls", ("ASP-MSG-003",), stalls), 99, tight, Credentials(tight), terms
    )
    assert stalled.outcome == Outcome.HARNESS_ERROR
    assert "the kit's own budget" in stalled.reason and "not a verdict on the server" in stalled.reason


async def test_a_premise_that_does_not_hold_is_retried_longer_then_untestable(check_server: ServerProcess):
    terms = await _terms(check_server)
    stretches: list[float] = []

    async def too_late(ctx: CaseContext) -> None:
        stretches.append(ctx.stretch)
        ctx.check(False, "ASP-MSG-003", "would be a failure, were the premise true")
        ctx.precondition(False, "the run completed before the probe could reach the server")

    result = await run_case(
        Case("kit.premise", "premise", ("ASP-MSG-003",), too_late),
        97,
        options(check_server),
        Credentials(options(check_server)),
        terms,
    )
    assert stretches == [1.0, RETRY_STRETCH]
    assert result.outcome == Outcome.UNTESTABLE and "premise did not hold" in result.reason
    assert result.findings == []


async def test_tokens_never_reach_a_report_even_in_a_harness_error(check_server: ServerProcess):
    terms = await _terms(check_server)
    credentials = Credentials(options(check_server))

    async def leaks(ctx: CaseContext) -> None:
        raise RuntimeError(
            f"cannot open {ctx.options.url}?token={ctx.token()} with secret {ctx.options.jwt_secret}"
        )

    result = await run_case(
        Case("kit.leak", "leak", ("ASP-MSG-003",), leaks), 96, options(check_server), credentials, terms
    )
    assert result.outcome == Outcome.HARNESS_ERROR and "<redacted>" in result.reason
    assert SECRET not in result.reason and "eyJ" not in result.reason


def test_which_outcomes_fail_a_run_has_one_rule():
    failing = {o for o in Outcome if blocks(o, strict=False)}
    assert failing == {Outcome.FAIL, Outcome.HARNESS_ERROR, Outcome.STALE_BASELINE}
    assert {o for o in Outcome if blocks(o, strict=True)} == failing | {Outcome.WARNING}
