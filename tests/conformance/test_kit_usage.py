"""No green without evidence, no red without a server fault: `asp check` as a new user runs it.

Usage errors exit 2 with one line and no secret; every requested report is written on every run,
also when nothing could be checked; a level with untested requirements is "not proven".
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from conformance.registry import all_cases
from conformance.report.writers import REPORT_SCHEMA
from tests.conformance.conftest import start
from tests.support.faults import panel_url
from tests.support.server import SECRET, ServerProcess

REPO = Path(__file__).resolve().parents[2]
A_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEyMyJ9.c2VjcmV0LXNpZ25hdHVyZS1ub3QtdG8tcHJpbnQ"
UNREACHABLE = "ws://127.0.0.1:9/ws/chat"


# The kit's packaged pytest suite, run as a user runs it
PACKAGED_SUITE = [
    sys.executable,
    "-m",
    "pytest",
    "--pyargs",
    "conformance.suite",
    "-q",
    "-p",
    "no:cacheprovider",
]


def asp_check(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asp_cli.main", "check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def report_files(directory: Path) -> list[str]:
    return [
        "--json-file",
        str(directory / "report.json"),
        "--junit-file",
        str(directory / "report.xml"),
        "--html-file",
        str(directory / "report.html"),
        "--traceability",
        str(directory / "TRACEABILITY.md"),
    ]


def valid_report(path: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(path.read_text())
    assert list(Draft202012Validator(json.loads(REPORT_SCHEMA.read_text())).iter_errors(report)) == []
    return report


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/ws/chat",
        "127.0.0.1:9/ws/chat",
        "ws:///ws/chat",
        f"ws://127.0.0.1:9/ws/chat?token={A_TOKEN}",
    ],
    ids=["http", "no-scheme", "no-host", "token-in-url"],
)
def test_a_bad_url_is_a_usage_error_of_one_line_that_never_shows_the_token(url: str):
    result = asp_check(url, "--token", A_TOKEN, "--quiet")
    assert result.returncode == 2, result.stdout + result.stderr
    assert A_TOKEN not in result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_url_of_another_scheme_is_shown_with_its_port_and_without_its_userinfo() -> None:
    result = asp_check("http://user:hunter2@127.0.0.1:8001/ws/chat", "--token", A_TOKEN, "--quiet")
    assert result.returncode == 2
    said = "asp check: error: the target must be a ws:// or wss:// URL with a host, not http://127.0.0.1:8001/ws/chat"
    assert result.stderr == said + "\n"


@pytest.mark.parametrize("selector", ["nosuchthing", "runs.no_such_case", "ASP-XYZ-001"])
def test_an_unknown_case_requirement_or_section_is_a_usage_error(selector: str):
    result = asp_check(UNREACHABLE, "--token", A_TOKEN, "--cases", selector, "--quiet")
    assert result.returncode == 2, result.stdout + result.stderr
    assert selector in result.stderr and "matches no case" in result.stderr


@pytest.mark.parametrize("algorithms", ["HS999", "", "hs256"])
def test_an_unknown_jwt_algorithm_is_a_usage_error(algorithms: str):
    result = asp_check(UNREACHABLE, "--token", A_TOKEN, "--jwt-algorithms", algorithms, "--quiet")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--jwt-algorithms" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_unreachable_server_writes_every_report_and_exits_1(tmp_path: Path):
    result = asp_check(UNREACHABLE, "--token", A_TOKEN, "--quiet", *report_files(tmp_path))
    assert result.returncode == 1 and "cannot check" in result.stdout
    report = valid_report(tmp_path / "report.json")
    assert report["exit_code"] == 1 and report["cases"][0]["id"] == "probe.first_connection"
    assert {level["verdict"] for level in report["compliance"].values()} == {"not proven"}
    # one compliance line with counts, not every requirement ID of every level
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("compliance")]
    assert re.fullmatch(
        r"compliance: not proven at any level, nothing could be checked "
        r"\(untested: core \d+, recommended \d+, full \d+\)",
        line,
    ), line
    assert "ASP-" not in result.stdout
    for name in ("report.xml", "report.html", "TRACEABILITY.md"):
        assert (tmp_path / name).read_text()
    assert A_TOKEN not in "".join(p.read_text() for p in tmp_path.iterdir()) + result.stdout


def test_an_unreachable_server_is_one_line_and_the_compliance_counts_not_five(tmp_path: Path):
    """As a new user runs it (no --quiet): nothing listens, so the terminal says so once and gives
    the compliance line of counts; the probe's result line, the case count and "exit 1" only
    repeated it. The reports are still written, holding the probe's result."""
    result = asp_check(UNREACHABLE, "--jwt-secret", SECRET, *report_files(tmp_path))
    assert result.returncode == 1 and result.stderr == "", result.stdout + result.stderr
    first, compliance = result.stdout.splitlines()
    assert first.startswith(f"cannot check {UNREACHABLE}: cannot connect: "), result.stdout
    assert compliance.startswith("compliance: not proven at any level, nothing could be checked (untested: ")
    assert valid_report(tmp_path / "report.json")["cases"][0]["id"] == "probe.first_connection"


def test_a_session_that_breaks_the_spec_is_a_failure_citing_its_requirement_in_every_report(
    panel: ServerProcess, tmp_path: Path
):
    url = panel_url(panel.url, "protocol_version_ends_in_newline")
    result = asp_check(url, "--jwt-secret", SECRET, "--quiet", *report_files(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    report = valid_report(tmp_path / "report.json")
    (probe,) = report["cases"]
    assert probe["outcome"] == "fail" and "ASP-ENV-001" in probe["requirements"]
    assert probe["transcripts"] and report["compliance"]["core"]["verdict"] == "no"
    assert "ASP-ENV-001" in (tmp_path / "report.xml").read_text()


def test_credentials_the_server_refuses_are_a_usage_error_not_a_server_fault(
    check_server: ServerProcess, tmp_path: Path
):
    wrong = "a-secret-that-is-not-the-servers-0123456789"
    result = asp_check(check_server.url, "--jwt-secret", wrong, "--quiet", *report_files(tmp_path))
    assert result.returncode == 2, result.stdout + result.stderr
    # one line, nothing else (no compliance lines listing every requirement): the reports hold the rest
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.stdout + result.stderr
    assert result.stderr.startswith("asp check: error: the server refused the credentials")
    # the secret may have come from the variable: the hint names both ways in
    assert result.stderr.endswith("check --jwt-secret (or ASP_CHECK_JWT_SECRET)\n"), result.stderr
    assert wrong not in result.stdout + result.stderr
    report = valid_report(tmp_path / "report.json")
    assert report["exit_code"] == 2 and "refused the credentials" in report["usage_error"]
    assert [c["outcome"] for c in report["cases"]] == ["untestable"]
    assert wrong not in (tmp_path / "report.json").read_text()


def test_one_users_token_stays_inside_the_announced_rate_limit(tmp_path: Path):
    """With the one token `make serve` prints, the kit used up the 20-per-minute rate limit itself
    and blamed the server's right answers on ASP-MSG-001 / ASP-RES-002."""
    server = start(tmp_path / "asp.db", ASP_RATE_LIMIT_MESSAGES="20", ASP_RATE_LIMIT_WINDOW_MS="60000")
    try:
        result = asp_check(
            server.url, "--token", server.token("dev"), "--quiet", "--json-file", str(tmp_path / "r.json")
        )
    finally:
        server.stop()
    report = valid_report(tmp_path / "r.json")
    not_passed = {c["id"]: (c["outcome"], c["reason"]) for c in report["cases"] if c["outcome"] != "pass"}
    assert result.returncode == 0, not_passed
    assert {outcome for outcome, _ in not_passed.values()} <= {"untestable", "not_applicable"}
    paced = [reason for outcome, reason in not_passed.values() if "rate limit" in reason]
    assert paced, not_passed  # some cases could not fit the limit: said so, not failed


def test_a_level_with_untestable_requirements_is_not_proven_and_names_them(tmp_path: Path):
    """With the default --max-wait the 60 s idle timeout is not waited out: ASP-HB-002 (a core MUST)
    is untestable, and core compliance is not "yes"."""
    server = start(tmp_path / "asp.db", ASP_IDLE_TIMEOUT_MS="60000")
    try:
        result = asp_check(
            server.url,
            "--jwt-secret",
            SECRET,
            "--cases",
            "heartbeats,handshake",
            "--json-file",
            str(tmp_path / "r.json"),
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout
    core = valid_report(tmp_path / "r.json")["compliance"]["core"]
    assert core["verdict"] == "not proven" and "ASP-HB-002" in core["untestable"]
    assert re.search(r"compliance core: not proven \(\d+ untestable: .*ASP-HB-002", result.stdout)
    assert "--max-wait" in result.stdout


def test_the_packaged_suite_without_a_url_is_a_usage_error():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "conformance.suite", "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 4, result.stdout + result.stderr  # pytest's usage-error exit code
    assert "--asp-url" in result.stderr


def test_the_packaged_suite_with_refused_credentials_is_a_usage_error(check_server: ServerProcess):
    result = subprocess.run(
        [
            *PACKAGED_SUITE,
            "--asp-url",
            check_server.url,
            "--asp-jwt-secret",
            "not-the-servers-secret-0123456789",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 4, result.stdout + result.stderr
    assert "refused the credentials" in result.stderr


def test_one_case_count_in_the_readme_the_cli_and_pytest(check_server: ServerProcess):
    count = len(all_cases())
    readme = (REPO / "README.md").read_text()
    assert f"runs {count} cases" in readme
    listed = subprocess.run(
        [sys.executable, "-m", "asp_cli.main", "check", "--list"], capture_output=True, text=True, timeout=60
    )
    assert listed.stdout.strip().splitlines()[-1] == f"{count} cases"
    collected = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--pyargs",
            "conformance.suite",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "--asp-url",
            check_server.url,
            "--asp-jwt-secret",
            SECRET,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"{count} tests collected" in collected.stdout, collected.stdout[-500:]


def test_credentials_from_the_environment_never_reach_the_command_line(check_server: ServerProcess):
    """ASP_CHECK_JWT_SECRET mints the tokens (the GitHub action passes the secret this way only)."""
    result = subprocess.run(
        [sys.executable, "-m", "asp_cli.main", "check", check_server.url, "--cases", "runs.ping_pong"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ASP_CHECK_JWT_SECRET": SECRET},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "pass" in result.stdout and SECRET not in result.stdout + result.stderr
    refused = subprocess.run(
        [sys.executable, "-m", "asp_cli.main", "check", check_server.url, "--cases", "runs.ping_pong"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ASP_CHECK_TOKEN": A_TOKEN},
    )
    assert refused.returncode == 2 and A_TOKEN not in refused.stdout + refused.stderr


def test_a_short_secret_mints_without_pyjwts_key_length_warning(check_server: ServerProcess):
    """The kit is not the place to police the server's key length: a short (here wrong) secret
    gives the one refusal line, and no InsecureKeyLengthWarning with a file path."""
    result = asp_check(check_server.url, "--jwt-secret", "short", "--quiet")
    assert result.returncode == 2
    assert "Warning" not in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_a_wrong_path_is_no_asp_endpoint_not_a_server_failure(check_server: ServerProcess, tmp_path: Path):
    """The reference server answers 403 to a path it does not serve: the first connection never
    upgraded, so nothing says this URL is an ASP endpoint: cannot check, no rule blamed (as when
    nothing listens), exit 1."""
    wrong = check_server.url.replace("/ws/chat", "/ws/chta")
    sarif = tmp_path / "report.sarif"
    result = asp_check(wrong, "--jwt-secret", SECRET, "--quiet", "--sarif-file", str(sarif))
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"cannot check {wrong}: no ASP endpoint answered at this URL "
        "(HTTP 403: is the path right? are the credentials right?)" in result.stdout
    ), result.stdout
    assert "ASP-TRN-002" not in result.stdout
    assert len(result.stdout.splitlines()) == 2, result.stdout  # that line and the compliance counts
    assert json.loads(sarif.read_text())["runs"][0]["results"] == []


def test_a_plain_web_server_is_no_asp_endpoint_with_its_status(tmp_path: Path):
    """Python's http.server answers HTTP/1.0 404: a valid HTTP response, reported by its status."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"ws://127.0.0.1:{server.server_address[1]}/ws/chat"
        result = asp_check(url, "--jwt-secret", SECRET, "--quiet", *report_files(tmp_path))
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no ASP endpoint answered at this URL (HTTP 404: is the path right?" in result.stdout
    assert "valid HTTP response" not in result.stdout and "ASP-TRN-002" not in result.stdout
    report = valid_report(tmp_path / "report.json")
    assert report["cases"][0]["requirements"] == [] and report["cases"][0]["findings"] == []


def test_a_password_in_the_url_is_never_printed_nor_stored(tmp_path: Path):
    url = "ws://user:hunter2@127.0.0.1:9/ws/chat"
    result = asp_check(url, "--token", A_TOKEN, "--quiet", *report_files(tmp_path))
    assert result.returncode == 1 and "ws://user:***@127.0.0.1:9/ws/chat" in result.stdout, result.stdout
    written = "".join(p.read_text() for p in tmp_path.iterdir())
    assert "hunter2" not in result.stdout + result.stderr + written
    assert valid_report(tmp_path / "report.json")["target"] == "ws://user:***@127.0.0.1:9/ws/chat"


def test_an_empty_token_file_says_so(tmp_path: Path):
    empty = tmp_path / "tokens.txt"
    empty.write_text("# no token yet\n\n")
    result = asp_check(UNREACHABLE, "--token-file", str(empty))
    assert result.returncode == 2
    assert (
        result.stderr == f"asp check: error: --token-file {empty} holds no token (one a line; "
        "blank lines and # comments are skipped)\n"
    ), result.stderr


def test_the_packaged_suite_takes_the_secret_from_the_environment_and_names_its_own_options(
    check_server: ServerProcess,
):
    clean = {k: v for k, v in os.environ.items() if k not in ("ASP_CHECK_JWT_SECRET", "ASP_CHECK_TOKEN")}
    bare = subprocess.run(
        [*PACKAGED_SUITE, "--asp-url", check_server.url],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean,
    )
    assert bare.returncode == 4, bare.stdout + bare.stderr
    assert "give --asp-token, --asp-token-file or --asp-jwt-secret" in bare.stderr, bare.stderr
    chosen = subprocess.run(
        [*PACKAGED_SUITE, "--asp-url", check_server.url, "-k", "ping_pong"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**clean, "ASP_CHECK_JWT_SECRET": SECRET},
    )
    assert chosen.returncode == 0 and " passed" in chosen.stdout, (
        chosen.stdout[-2000:] + chosen.stderr[-2000:]
    )


def test_requirements_of_cases_not_selected_are_not_selected_not_untestable(
    check_server: ServerProcess, tmp_path: Path
):
    result = asp_check(
        check_server.url,
        "--jwt-secret",
        SECRET,
        "--cases",
        "runs.ping_pong",
        "--quiet",
        *report_files(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    core = next(line for line in result.stdout.splitlines() if line.startswith("compliance core:"))
    assert re.fullmatch(
        r"compliance core: not proven \((\d+ untestable: [^;]+; )?"
        r"\d+ not selected by --cases runs.ping_pong\)",
        core,
    ), core
    report = valid_report(tmp_path / "report.json")
    level = report["compliance"]["core"]
    assert level["not_selected"] and not set(level["not_selected"]) & set(level["untestable"])
    assert (
        report["requirements"][level["not_selected"][0]]["reason"] == "not selected by --cases runs.ping_pong"
    )


async def test_other_clients_holding_slots_are_named_in_a_connection_limit_failure(tmp_path: Path):
    """Two checks at once against one server: the limit case sees fewer admitted than the limit.
    The verdict stays (the kit cannot tell), and the message says why it may be so."""
    from websockets.asyncio.client import connect

    from conformance.options import CheckOptions
    from conformance.outcomes import Outcome
    from conformance.runner import run_check

    # The other client sends no data frame: a long idle timeout keeps its slot however slowly the
    # kit reaches the case on a busy machine (the kit's own settings close it after a second).
    server = start(tmp_path / "asp.db", ASP_MAX_CONNECTIONS="3", ASP_IDLE_TIMEOUT_MS="60000")
    try:
        url = f"{server.url}?token={server.token('another-client')}"
        async with connect(url, subprotocols=["asp.v1"]):  # type: ignore[list-item]
            report = await run_check(
                CheckOptions(url=server.url, jwt_secret=SECRET, include=["limits.connection_limit"])
            )
    finally:
        server.stop()
    (result,) = report.results
    assert result.outcome == Outcome.FAIL
    assert "other clients of this server hold slots too" in result.reason, result.reason


def test_a_secret_beginning_with_a_dash_is_told_how_to_pass():
    """A generated secret may begin with '-', which argparse takes for a flag."""
    result = asp_check(UNREACHABLE, "--jwt-secret", "-abcdefabcdefabcdefabcdefabcdefabcdef")
    assert result.returncode == 2
    assert "a value beginning with '-' goes as --jwt-secret=VALUE" in result.stderr, result.stderr
    given = asp_check(UNREACHABLE, "--jwt-secret=-abcdefabcdefabcdefabcdefabcdefabcdef", "--quiet")
    assert given.returncode == 1 and "cannot connect" in given.stdout, given.stdout + given.stderr
