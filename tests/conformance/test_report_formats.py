"""`asp check` reports as CI and people read them: SARIF, `--fail-on`, GitHub Actions, JUnit with
wire logs, the HTML summary-first page, plain output, `--list`, the action.

One real `asp check` run against a deliberately broken server (the panel's `seq_gap`: ASP-ENV-002
broken, one case passing) writes every format at once and feeds most tests; `--fail-on` gets a
few one-case runs against a server that misses a SHOULD.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import yaml

from asp_cli.main import main
from conformance.outcomes import SEVERITIES, CaseResult, Finding, Outcome, blocks, fails, severity
from conformance.report.github import escape_data, escape_property
from conformance.report.model import log_label
from conformance.report.outputs import FILES
from spec.catalog import requirements
from tests.support.faults import panel_url
from tests.support.reports import junit_errors, sarif_errors
from tests.support.server import SECRET, ServerProcess

REPO = Path(__file__).resolve().parents[2]
UNREACHABLE = "ws://127.0.0.1:9/ws/chat"
# seq_gap breaks ASP-ENV-002 in every case with a run; the handshake case has none and passes.
CASES = "handshake.version_selected,runs.message_starts_a_run,runs.ping_pong"
SPEC_URL = "https://spec.example.org/asp/"
ANCHOR = "server/endpoint.py"  # --sarif-location: the file that serves the endpoint
PANEL_MULTIPLIER = "0.3"  # waits for answers a broken server never sends: loopback is fast


def asp(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asp_cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def run(panel: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One check of a broken server with every report, GitHub Actions mode and a step summary."""
    out = tmp_path_factory.mktemp("formats")
    summary = out / "step-summary.md"
    summary.write_text("# an earlier step\n")
    result = asp(
        "check",
        panel_url(panel.url, "seq_gap"),
        "--jwt-secret",
        SECRET,
        "--cases",
        CASES,
        "--timeout-multiplier",
        PANEL_MULTIPLIER,
        "--json-file",
        str(out / "report.json"),
        "--junit-file",
        str(out / "report.xml"),
        "--html-file",
        str(out / "report.html"),
        "--sarif-file",
        str(out / "report.sarif"),
        "--spec-url",
        SPEC_URL,
        "--sarif-location",
        ANCHOR,
        "--github-actions",
        env={"GITHUB_STEP_SUMMARY": str(summary), "COLUMNS": "80"},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    return {
        "result": result,
        "dir": out,
        "report": json.loads((out / "report.json").read_text()),
        "sarif": json.loads((out / "report.sarif").read_text()),
    }


def failing_requirements(report: dict[str, Any]) -> set[str]:
    return {rid for rid, entry in report["requirements"].items() if entry["outcome"] in ("fail", "warning")}


# SARIF


def test_the_sarif_log_validates_against_the_official_schema(run: dict[str, Any]):
    assert sarif_errors(run["sarif"]) == []
    assert run["sarif"]["version"] == "2.1.0"


def test_sarif_has_one_result_per_failing_requirement_with_its_catalog_rule(run: dict[str, Any]):
    (sarif_run,) = run["sarif"]["runs"]
    rules = sarif_run["tool"]["driver"]["rules"]
    catalog = requirements()
    assert [r["id"] for r in rules] == [r.id for r in catalog.values() if r.binds == "server"]
    results = sarif_run["results"]
    assert failing_requirements(run["report"]) == {"ASP-ENV-002"}
    assert [r["ruleId"] for r in results] == ["ASP-ENV-002"]
    (result,) = results
    rule = rules[result["ruleIndex"]]
    assert rule["id"] == "ASP-ENV-002" and rule["fullDescription"]["text"] == catalog["ASP-ENV-002"].statement
    assert rule["helpUri"] == SPEC_URL + "index.html#ASP-ENV-002"
    assert result["level"] == rule["defaultConfiguration"]["level"] == "error"  # a MUST
    assert "seq jumps" in result["message"]["text"]
    (location,) = result["locations"]
    assert location["physicalLocation"]["artifactLocation"]["uri"] == ANCHOR  # GitHub needs a file
    names = {loc["name"] for loc in location["logicalLocations"]}
    assert {"runs.message_starts_a_run", "runs.ping_pong"} <= names
    assert "handshake.version_selected" not in names
    levels = {r["id"]: r["defaultConfiguration"]["level"] for r in rules}
    expected = {"MUST": "error", "SHOULD": "warning", "MAY": "note"}
    assert all(levels[rid] == expected[catalog[rid].level] for rid in levels)
    (invocation,) = sarif_run["invocations"]
    assert invocation["exitCode"] == 1 and invocation["executionSuccessful"] is True


# --fail-on, on a server that misses one SHOULD (ASP-RUN-009: text held back until the run ends)


@pytest.mark.parametrize(
    ("extra", "exit_code", "failures"),
    [
        ([], 0, "0"),
        (["--fail-on", "warning"], 1, "1"),
        (["--fail-on", "info"], 1, "1"),
        (["--fail-on", "warning", "--expected-failures", "BASELINE"], 0, "0"),
    ],
    ids=["error", "warning", "info", "warning-expected"],
)
def test_fail_on_sets_the_least_severity_that_fails_the_run(
    panel: ServerProcess, tmp_path: Path, extra: list[str], exit_code: int, failures: str
):
    baseline = tmp_path / "baseline.txt"
    baseline.write_text("ASP-RUN-009  # held back on purpose\n")
    result = asp(
        "check",
        panel_url(panel.url, "buffers_text_until_complete"),
        "--jwt-secret",
        SECRET,
        "--cases",
        "runs.streams_incrementally",
        "--quiet",
        "--github-actions",
        "--sarif-file",
        str(tmp_path / "r.sarif"),
        "--junit-file",
        str(tmp_path / "r.xml"),
        "--json-file",
        str(tmp_path / "r.json"),
        *[str(baseline) if a == "BASELINE" else a for a in extra],
        env={"GITHUB_STEP_SUMMARY": ""},
    )
    assert result.returncode == exit_code, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["exit_code"] == exit_code
    assert report["options"]["fail_on"] == (extra[1] if extra else "error")
    sarif = json.loads((tmp_path / "r.sarif").read_text())
    assert sarif_errors(sarif) == []
    (sarif_result,) = sarif["runs"][0]["results"]
    assert sarif_result["ruleId"] == "ASP-RUN-009" and sarif_result["level"] == "warning"
    assert "physicalLocation" not in sarif_result["locations"][0]  # no --sarif-location
    suite = ElementTree.parse(tmp_path / "r.xml").getroot()
    assert junit_errors(suite) == [] and suite.get("failures") == failures
    if failures == "0" and "--expected-failures" not in extra:
        (note,) = suite.iter("system-out")
        assert (note.text or "").startswith("warning (warning, not failing at --fail-on error): ASP-RUN-009")
    assert result.stdout.rstrip().endswith(f"exit {exit_code}" + (f" (fail on {extra[1]})" if extra else ""))
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::")]
    if "--expected-failures" in extra:
        assert sarif_result["suppressions"][0]["kind"] == "external"
        assert annotations == [a for a in annotations if a.startswith("::notice title=ASP-RUN-009")] != []
    else:
        assert "suppressions" not in sarif_result
        assert len(annotations) == 1 and annotations[0].startswith("::warning title=ASP-RUN-009 (SHOULD)::")


# GitHub Actions


def test_github_mode_prints_one_error_annotation_per_failing_requirement(run: dict[str, Any]):
    annotations = [line for line in run["result"].stdout.splitlines() if line.startswith("::")]
    assert len(annotations) == 1
    assert annotations[0].startswith("::error title=ASP-ENV-002 (MUST)::")
    assert requirements()["ASP-ENV-002"].statement in annotations[0]
    assert "runs.message_starts_a_run" in annotations[0] and "seq jumps" in annotations[0]


def test_github_mode_appends_a_job_summary_table(run: dict[str, Any]):
    summary = (run["dir"] / "step-summary.md").read_text()
    assert summary.startswith("# an earlier step\n")  # appended, never replaced
    assert "## ASP server conformance: FAILED" in summary
    assert "| fail | 2 |" in summary and "| pass | 1 |" in summary
    assert re.search(r"^\| ASP-ENV-002 \| MUST \| .*runs\.ping_pong", summary, re.M)
    assert "| core | no (1 failed: ASP-ENV-002) |" in summary


def test_annotation_text_is_escaped_as_the_runner_requires():
    assert escape_data("50% done\r\nnext") == "50%25 done%0D%0Anext"
    assert escape_property("ASP-ENV-002: a, b") == "ASP-ENV-002%3A a%2C b"


# JUnit


def test_junit_is_well_formed_and_each_failing_testcase_carries_its_wire_log(run: dict[str, Any]):
    suite = ElementTree.parse(run["dir"] / "report.xml").getroot()
    assert junit_errors(suite) == []
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {c["id"] for c in run["report"]["cases"]}
    for name in ("runs.message_starts_a_run", "runs.ping_pong"):
        failure, log = cases[name].find("failure"), cases[name].find("system-out")
        assert failure is not None and "ASP-ENV-002" in (failure.text or "")
        assert log is not None and (log.text or "").startswith("connection 1 (")
        assert re.search(r'^ +\d+\.\d{4} recv +\{"type": "session"', log.text or "", re.M)
        assert re.search(r"^ +\d+\.\d{4} send +\{", log.text or "", re.M)
    assert cases["handshake.version_selected"].find("system-out") is None


# HTML


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []  # "table#id" and "section#id" in document order
        self.rows: list[dict[str, str | None]] = []
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.details: list[tuple[str, bool]] = []  # (class, open)
        self.filters: list[str] = []
        self._in_summary = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(str(found["id"]))
        if tag in ("table", "section"):
            self.order.append(f"{tag}#{found.get('id') or ''}")
            self._in_summary = tag == "table" and found.get("id") == "summary"
        if tag == "tr" and self._in_summary and "data-outcome" in found:
            self.rows.append(found)
        if tag == "a" and self._in_summary and str(found.get("href", "")).startswith("#"):
            self.links.append(str(found["href"])[1:])
        if tag == "details":
            self.details.append((str(found.get("class")), "open" in found))
        if tag == "input" and found.get("type") == "checkbox":
            self.filters.append(str(found.get("value")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_summary = False


def test_the_html_report_leads_with_a_summary_table_failures_first(run: dict[str, Any]):
    text = (run["dir"] / "report.html").read_text()
    page = _Page()
    page.feed(text)
    assert page.order[0] == "table#" and page.order[1] == "table#summary"  # compliance, then the summary
    assert all(
        item.startswith("table") for item in page.order[: page.order.index("section#" + page.links[0])]
    )
    outcomes = [row["data-outcome"] for row in page.rows]
    assert outcomes == ["fail", "fail", "fail", "pass"]  # two cases and the oracle, then the pass
    assert set(page.links) == {c["id"] for c in run["report"]["cases"]} | {"oracle.all_frames"}
    assert set(page.links) <= page.ids  # every row links to its case's section
    wire = [opened for kind, opened in page.details if kind == "wire"]
    assert wire and not any(wire)  # wire logs collapsed
    cases = [opened for kind, opened in page.details if kind == "case"]
    assert cases == [True, True, True, False]  # what did not pass starts open
    assert page.filters == ["pass", "fail"]
    assert "&#34;type&#34;: &#34;session&#34;" in text and "{{" not in text


# Plain output, --list and usage errors


def test_plain_output_is_never_wrapped_mid_phrase_when_stdout_is_a_pipe(run: dict[str, Any]):
    lines = run["result"].stdout.splitlines()
    progress = [line for line in lines if re.match(r"^(pass|fail) ", line)]
    assert len(progress) == 3 and all(re.fullmatch(r"(pass|fail) +\S+ \d+\.\d\ds", line) for line in progress)
    missing = [line for line in lines if "event(s) missing" in line]
    assert missing and all("ASP-ENV-002" in line and "seq jumps from" in line for line in missing)
    assert max(len(line) for line in lines) > 80  # longer than the 80 columns rich assumed


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`asp ARGS` in this process (no interpreter start-up): exit code, stdout, stderr."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_honours_cases_and_exclude_and_prints_a_count(capsys: pytest.CaptureFixture[str]):
    everything = in_process(capsys, "check", "--list")[1].splitlines()
    total = len(everything) - 1
    assert everything[-1] == f"{total} cases"
    code, out, _ = in_process(capsys, "check", "--list", "--cases", "runs", "--exclude", "runs.cancel")
    listed = out.splitlines()
    assert code == 0 and listed[-1] == f"{len(listed) - 1} cases of {total}"
    assert listed[:-1] and all(line.startswith("runs.") for line in listed[:-1])
    assert not any(line.split()[0] == "runs.cancel" for line in listed[:-1])
    clients = in_process(capsys, "check-client", "--list", "--cases", "reconnect")[1].splitlines()
    assert re.fullmatch(r"\d+ scenarios of \d+", clients[-1]) and len(clients) > 1


@pytest.mark.parametrize(
    "args",
    [
        ["check", UNREACHABLE, "--token", "t", "--fail-on", "fatal"],
        ["check", UNREACHABLE, "--token", "t", "--strict", "--fail-on", "error"],
        ["check", UNREACHABLE, "--token", "t", "--json-file", "/nonexistent-dir/report.json"],
        ["check", UNREACHABLE, "--token", "t", "--sarif-file", "DIR"],
        ["check", "--list", "--cases", "nosuchthing"],
        ["check-client", "--command", "true", "--fail-on", "fatal"],
        ["check-client", "--command", "true", "--junit-file", "/nonexistent-dir/report.xml"],
    ],
    ids=["fail-on", "strict-vs-error", "no-dir", "a-dir", "list-selector", "client-fail-on", "client-no-dir"],
)
def test_a_bad_report_option_is_a_usage_error_of_one_line_before_any_connection(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    code, out, err = in_process(capsys, *[str(tmp_path) if a == "DIR" else a for a in args])
    assert code == 2, out + err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out == ""  # nothing ran


# The GitHub Action


def test_the_action_runs_asp_check_on_a_url_from_its_inputs(panel: ServerProcess, tmp_path: Path):
    """The action's own script, with its inputs in the environment as the runner passes them."""
    action = yaml.safe_load((REPO / "action.yml").read_text())
    assert action["inputs"]["url"]["required"] is True
    (step,) = [s for s in action["runs"]["steps"] if s.get("id") == "check"]
    assert "${{" not in step["run"]  # inputs reach the script through the environment only
    env = {}
    for name, value in step["env"].items():
        match = re.fullmatch(r"\$\{\{ inputs\.([a-z-]+) \}\}", value)
        assert match and match.group(1) in action["inputs"], name
        env[name] = str(action["inputs"][match.group(1)].get("default", ""))
    env |= {
        "ASP_CHECK_URL": panel_url(panel.url, "seq_gap"),
        "ASP_CHECK_JWT_SECRET": SECRET,
        "ASP_CHECK_CASES": "handshake.version_selected,runs.ping_pong",
        "ASP_CHECK_SARIF_LOCATION": ANCHOR,
        "ASP_CHECK_REPORT_DIR": str(tmp_path / "reports"),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    result = subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert result.returncode == 1, result.stdout + result.stderr  # the step fails as the check did
    assert "::error title=ASP-ENV-002 (MUST)::" in result.stdout
    outputs = dict(line.split("=", 1) for line in (tmp_path / "output").read_text().splitlines())
    assert outputs["exit-code"] == "1"
    sarif = json.loads(Path(outputs["sarif-file"]).read_text())
    assert sarif_errors(sarif) == []
    (located,) = sarif["runs"][0]["results"][0]["locations"]
    assert located["physicalLocation"]["artifactLocation"]["uri"] == ANCHOR
    assert "## ASP server conformance: FAILED" in (tmp_path / "summary.md").read_text()
    assert {p.suffix for p in (tmp_path / "reports").iterdir()} == {".sarif", ".xml", ".html", ".json"}


def test_the_readme_shows_every_report_option():
    readme = (REPO / "README.md").read_text()
    for flag in [
        *(flag for _, flag, _ in FILES),
        "--fail-on",
        "--github-actions",
        "--spec-url",
        "action.yml",
    ]:
        assert f"`{flag}" in readme or f"[`{flag}`]" in readme, flag


def test_severity_follows_the_level_of_what_was_missed_and_fail_on_ranks_it():
    def result(outcome: Outcome, *missed: str) -> CaseResult:
        findings = [Finding(rid, False, "missed") for rid in missed]
        return CaseResult("c", "t", "s", list(missed), outcome, 0.0, findings=findings)

    must, should, may = "ASP-ENV-002", "ASP-RUN-009", "ASP-EXT-001"
    assert [requirements()[r].level for r in (must, should, may)] == ["MUST", "SHOULD", "MAY"]
    table = {
        "must": (result(Outcome.FAIL, must), "error"),
        "should": (result(Outcome.WARNING, should), "warning"),
        "may": (result(Outcome.WARNING, may), "info"),
        "should-and-may": (result(Outcome.WARNING, may, should), "warning"),
        "expected": (result(Outcome.EXPECTED_FAILURE, must), None),
        "kit": (result(Outcome.HARNESS_ERROR), "error"),
        "stale": (result(Outcome.STALE_BASELINE), "error"),
        "untestable": (result(Outcome.UNTESTABLE), None),
    }
    for name, (case, level) in table.items():
        assert severity(case) == level, name
        for threshold in SEVERITIES:
            failing = level is not None and SEVERITIES.index(level) <= SEVERITIES.index(threshold)
            assert fails(case, threshold) == failing, (name, threshold)
        assert fails(case, "error") == blocks(case.outcome, strict=False), name


def test_a_check_that_could_not_connect_is_annotated_and_noted_in_sarif(tmp_path: Path):
    """No requirement to name (the probe found no server): a tool notification, an ::error."""
    sarif_file = tmp_path / "r.sarif"
    result = asp(
        "check", UNREACHABLE, "--token", "t", "--quiet", "--github-actions", "--sarif-file", str(sarif_file)
    )
    assert result.returncode == 1, result.stdout + result.stderr
    sarif = json.loads(sarif_file.read_text())
    assert sarif_errors(sarif) == []
    (sarif_run,) = sarif["runs"]
    assert sarif_run["results"] == []
    (note,) = sarif_run["invocations"][0]["toolExecutionNotifications"]
    assert note["level"] == "error" and "probe.first_connection" in note["message"]["text"]
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::")]
    assert len(annotations) == 1 and annotations[0].startswith("::error title=probe.first_connection fail::")


def test_a_client_reports_stdio_log_is_labelled_as_such_not_as_a_connection():
    wire = [
        {"t": 0.0, "direction": "open", "reason": "asp.v1"},
        {"t": 0.1, "direction": "recv", "text": "{}"},
    ]
    stdio = [
        {"t": 0.0, "direction": "send", "text": 'stdin {"send": "hi"}'},
        {"t": 0.2, "direction": "recv", "text": 'stdout {"state": "open"}'},
        {"t": 0.3, "direction": "close", "code": 0, "reason": "exit"},
    ]
    assert log_label(wire, 1) == "connection 1"
    assert log_label(stdio, 2) == "the client's standard input and output"


def test_the_summary_names_the_max_wait_that_would_prove_what_waited_too_long():
    """Cases untestable under --max-wait say which wait they need; the summary gives the flag once,
    and a line of a result that does not fail the run has no stray leading space."""
    from conformance.report.model import Report
    from conformance.report.writers import to_terminal

    def untestable(case_id: str, reason: str) -> CaseResult:
        return CaseResult(case_id, case_id, "heartbeats", ["ASP-HB-002"], Outcome.UNTESTABLE, 0.0, reason)

    waited = (
        "waiting out the announced idle timeout takes 65.2s, longer than --max-wait (20s); "
        "--max-wait {} waits it out"
    )
    report = Report(
        target="ws://127.0.0.1:1/ws/chat",
        started="2026-12-01T00:00:00+00:00",
        duration_s=1.0,
        terms=None,
        judges="client",
        results=[
            untestable("heartbeats.idle_timeout", waited.format(66)),
            untestable("heartbeats.run_then_idle", waited.format(64)),
            untestable("auth.expired_token", "needs fixtures"),
        ],
    )
    text = to_terminal(report)
    assert (
        "--max-wait 66 would wait out what the server announced for 2 untestable cases: "
        "heartbeats.idle_timeout, heartbeats.run_then_idle"
    ) in text.splitlines(), text
    assert "UNTESTABLE      auth.expired_token: needs fixtures" in text.splitlines(), text
