"""`asp check` against the clean reference server: every case passes, fast, with valid reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from jsonschema import Draft202012Validator

from conformance.registry import ORACLE_REQUIREMENTS, all_cases
from conformance.report.writers import REPORT_SCHEMA
from spec import PROTOCOL_VERSION
from spec.catalog import requirements
from tests.support.server import SECRET, ServerProcess

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checked(check_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One full `asp check` run, exactly as the README gives it, with every report written."""
    out = tmp_path_factory.mktemp("reports")
    command = [
        sys.executable,
        "-m",
        "asp_cli.main",
        "check",
        check_server.url,
        "--jwt-secret",
        SECRET,
        "--jwt-algorithms",  # the reference server takes HS256 tokens only (README)
        "HS256",
        "--quiet",
        "--json-file",
        str(out / "report.json"),
        "--junit-file",
        str(out / "report.xml"),
        "--html-file",
        str(out / "report.html"),
        "--traceability",
        str(out / "TRACEABILITY.md"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    return {"result": result, "dir": out, "report": json.loads((out / "report.json").read_text())}


def test_every_applicable_case_passes_with_exit_0(checked: dict[str, Any]):
    result, report = checked["result"], checked["report"]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    not_passing = {c["id"]: (c["outcome"], c["reason"]) for c in report["cases"] if c["outcome"] != "pass"}
    assert not_passing == {}
    for name, level in report["compliance"].items():
        assert level["failed"] == [], name
        assert level["untestable"] == [], name
        assert level["verdict"] == "yes", name


def test_the_full_check_takes_under_sixty_seconds(checked: dict[str, Any]):
    assert checked["report"]["duration_s"] < 60


def test_the_report_has_a_result_for_every_testable_requirement(checked: dict[str, Any]):
    table = checked["report"]["requirements"]
    assert set(table) == set(requirements())
    for requirement in requirements().values():
        if requirement.testable and requirement.binds == "server":
            assert table[requirement.id]["outcome"] == "pass", (requirement.id, table[requirement.id])
            assert table[requirement.id]["cases"], requirement.id
        else:
            assert table[requirement.id]["outcome"] == "untestable" and table[requirement.id]["reason"]


def test_the_json_report_validates_against_its_schema(checked: dict[str, Any]):
    schema = json.loads(REPORT_SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    errors = list(Draft202012Validator(schema).iter_errors(checked["report"]))
    assert errors == []
    assert checked["report"]["spec_version"] == PROTOCOL_VERSION and checked["report"]["kit_version"]
    assert all(c["transcripts"] for c in checked["report"]["cases"])
    assert checked["report"]["oracle"]["outcome"] == "pass"


def test_the_junit_xml_parses_with_one_testcase_per_case(checked: dict[str, Any]):
    suite = ElementTree.parse(checked["dir"] / "report.xml").getroot()
    cases = suite.findall("testcase")
    assert len(cases) == len(checked["report"]["cases"])
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    assert all(c.find("properties") is not None for c in cases)


def test_the_html_report_renders_the_wire_transcripts(checked: dict[str, Any]):
    page = (checked["dir"] / "report.html").read_text()
    assert page.startswith("<!doctype html>")
    assert page.count("<section id=") == len(checked["report"]["cases"]) + 1  # and the oracle
    assert '<details class="wire">' in page and "&#34;type&#34;:&#34;session&#34;" in page


def test_the_committed_traceability_matrix_matches_a_real_run(checked: dict[str, Any]):
    def rows(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith("| ASP-")]

    fresh = rows((checked["dir"] / "TRACEABILITY.md").read_text())
    committed = rows((REPO / "conformance" / "TRACEABILITY.md").read_text())
    assert fresh == committed, "regenerate conformance/TRACEABILITY.md with asp check --traceability"


def test_every_must_has_a_case_or_an_untestable_reason():
    cited = {r for case in all_cases() for r in case.requirements} | set(ORACLE_REQUIREMENTS)
    for requirement in requirements().values():
        if requirement.level != "MUST" or requirement.binds != "server":
            continue
        assert requirement.id in cited or (requirement.method == "untestable" and requirement.reason), (
            requirement.id
        )
