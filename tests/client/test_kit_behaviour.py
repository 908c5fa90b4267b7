"""asp check-client's contract with its user: usage errors, a client that cannot be checked,
baselines, the version a client is held to."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from conformance.client.options import ClientCheckOptions
from conformance.client.runner import run_client_check
from conformance.client.scenarios import all_scenarios
from conformance.outcomes import Outcome
from tests.client.broken_clients import PANEL
from tests.client.conftest import NODE

ASP = [sys.executable, "-m", "asp_cli.main", "check-client"]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ASP, *args], capture_output=True, text=True, timeout=timeout)


def test_without_a_command_or_with_one_that_cannot_run_it_is_a_usage_error():
    missing = run()
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0, missing.stderr
    absent = run("--command", "/nonexistent/asp-client --flag")
    assert absent.returncode == 2 and "cannot run" in absent.stderr, absent.stderr
    typo = run("--command", "true", "--cases", "reconect.backoff")
    assert typo.returncode == 2 and "reconect.backoff" in typo.stderr, typo.stderr


def test_list_names_every_scenario_with_its_requirements():
    listed = run("--list")
    assert listed.returncode == 0
    for scenario in all_scenarios():
        assert scenario.id in listed.stdout and " ".join(scenario.requirements) in listed.stdout


def test_a_client_that_never_connects_is_not_checked_and_the_kit_says_why():
    script = (
        "import os, sys; print('starting with', os.environ['ASP_TOKEN'], file=sys.stderr); sys.stdin.read()"
    )
    result = run("--command", shlex.join([sys.executable, "-c", script]), "--timeout-multiplier", "0.1")
    assert result.returncode == 1
    assert "opened no connection" in result.stdout
    assert "starting with <ASP_TOKEN>" in " ".join(result.stdout.split())  # its stderr, the token redacted


def test_a_client_that_exits_at_once_is_reported_without_waiting_and_its_error_lines_are_whole():
    """A driver that dies on a missing module (Playwright, for the chromium driver): the kit stops
    waiting when the process has exited (with a start budget of 600 s here, the 120 s bound of the
    test is only met so) and quotes the last lines of its standard error whole."""
    noise = "import sys; [print('log line', n, '-' * 100, file=sys.stderr) for n in range(10)]; "
    script = noise + "import no_such_module_for_the_asp_kit"
    result = run(
        "--command", shlex.join([sys.executable, "-c", script]), "--timeout-multiplier", "30", timeout=120
    )
    assert result.returncode == 1
    output = " ".join(result.stdout.split())
    assert "opened no connection to ASP_URL: the client exited (status 1) without it" in output, output
    assert "Traceback (most recent call last):" in output
    assert "ModuleNotFoundError: No module named 'no_such_module_for_the_asp_kit'" in output


async def test_an_expected_failure_passes_the_run_and_an_entry_that_no_longer_fails_is_stale(tmp_path: Path):
    broken = PANEL["x_event_is_an_error"]
    patch = tmp_path / "patch.json"
    patch.write_text(json.dumps([{"find": f, "replace": r} for f, r in broken.patches]))
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"extensions.x_members_and_events": "known: x- events shown as errors"}))
    expected = await run_client_check(
        ClientCheckOptions(
            command=[*NODE, "--patch", str(patch)], include=list(broken.scenarios), expected_failures=baseline
        )
    )
    assert expected.results[0].outcome == Outcome.EXPECTED_FAILURE
    assert expected.exit_code() == 0
    fixed = await run_client_check(
        ClientCheckOptions(command=NODE, include=list(broken.scenarios), expected_failures=baseline)
    )
    assert fixed.results[0].outcome == Outcome.STALE_BASELINE
    assert fixed.exit_code() == 1


async def test_a_client_held_to_1_0_is_not_judged_on_what_1_1_added():
    report = await run_client_check(
        ClientCheckOptions(
            command=NODE,
            include=["resume.run_complete_in_history", "reconnect.unknown_code_as_backoff"],
            protocol_version="1.0",
            strict=True,
        )
    )
    outcomes = {r.case_id: r.outcome for r in report.results}
    assert outcomes["resume.run_complete_in_history"] == Outcome.NOT_APPLICABLE
    assert outcomes["reconnect.unknown_code_as_backoff"] == Outcome.NOT_APPLICABLE
    assert report.oracle is not None and report.oracle.outcome == Outcome.PASS, report.oracle
    assert report.exit_code() == 0


def test_the_chromium_driver_without_playwright_says_it_needs_the_dev_extra():
    """Playwright comes only with the dev extra: without it the driver says so in one line (the
    import is blocked here as if it were not installed)."""
    script = (
        "import sys; sys.modules['playwright'] = None; "
        "from reference_server.client_driver.__main__ import main; sys.exit(main(['chromium']))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert (
        result.stderr.count("\n") == 1 and "needs Playwright, which the dev extra installs" in result.stderr
    )
