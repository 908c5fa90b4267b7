"""One home for each fact: the kit reads close codes, error requirements, the oracle's requirements,
case gates and compliance levels from spec/, and writes none of them down again (issue 11, 3)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from xml.etree import ElementTree

import pytest

from conformance.outcomes import EXIT_OK, SEVERITIES, CaseResult, Outcome, blocks, fails
from conformance.registry import ORACLE_REQUIREMENTS, TOKEN_ECHO, all_cases, catalog_gates
from conformance.report.model import LEVELS, Report
from conformance.report.writers import to_junit, to_terminal
from spec.catalog import CatalogError, compliance_levels, parse_levels, requirements
from spec.machine import lifecycle
from spec.oracle import oracle_requirements
from spec.registry import capabilities, close_code, close_codes

ROOT = Path(__file__).resolve().parents[2]
# The kit: its modules, its cases, its report and its client kit (scenario IDs such as
# "reconnect.never_after_4001" are stable names, and the scan does not see a code after "_").
KIT = sorted(
    [
        *(ROOT / "conformance").glob("*.py"),
        *(ROOT / "conformance" / "cases").glob("*.py"),
        *(ROOT / "conformance" / "report").glob("*.py"),
        *(ROOT / "conformance" / "client").glob("*.py"),
        *(ROOT / "conformance" / "client" / "cases").glob("*.py"),
    ]
)
# Numbers that equal a close code but are not one: (file, value).
NOT_CLOSE_CODES = {("conformance/client/process.py", 4000)}  # characters of stderr kept
# 1000 (normal closure) is also the number of milliseconds in a second: not scanned.
CODES = {code for code in close_codes() if code != close_code("normal_closure")}
CODE_IN_TEXT = re.compile(r"\b(" + "|".join(str(c) for c in sorted(CODES)) + r")\b")


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the string constants that are docstrings (module, class, function)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def close_code_literals(path: Path, root: Path = ROOT) -> list[str]:
    """Every close code of the registry written as a number or inside a string (docstrings and
    comments excepted: they explain, the code must read the registry)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or id(node) in docstrings:
            continue
        value = node.value
        if isinstance(value, int) and not isinstance(value, bool) and value in CODES:
            if (path.relative_to(root).as_posix(), value) in NOT_CLOSE_CODES:
                continue
            found.append(f"{path.relative_to(root)}:{node.lineno}: {value}")
        elif isinstance(value, str) and CODE_IN_TEXT.search(value):
            found.append(f"{path.relative_to(root)}:{node.lineno}: {value!r}")
    return found


def test_no_close_code_is_written_in_the_kit() -> None:
    """Close codes come from spec/registry.yaml by name (`close_code("unauthorized")`)."""
    assert len(KIT) > 30
    found = [literal for path in KIT for literal in close_code_literals(path)]
    assert found == [], "close codes written in the kit; use spec.registry.close_code(name):\n" + "\n".join(
        found
    )


def test_the_scanner_sees_a_literal(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text(
        '"""4001 in a docstring is fine."""\nX = 4001  # a comment with 4002\nY = "closed 1013"\n'
    )
    assert [f.split(": ", 1)[1] for f in close_code_literals(source, tmp_path)] == ["4001", "'closed 1013'"]


def test_the_oracle_requirements_are_the_machines_and_the_oracles() -> None:
    """ORACLE_REQUIREMENTS is derived: every requirement lifecycle.yaml can report, the oracle's
    frame checks, and the kit's token-echo check; each is in the catalog and binds servers."""
    table = lifecycle()
    in_table = {state["otherwise"] for state in table["states"].values()}
    in_table |= {entry["requirement"] for entry in table["checks"]}
    in_table |= {guard["requirement"] for t in table["transitions"] for guard in t.get("guards", ())}
    in_table |= {t["violation"] for t in table["transitions"] if "violation" in t}
    assert in_table <= set(oracle_requirements())
    assert set(ORACLE_REQUIREMENTS) == {*oracle_requirements(), TOKEN_ECHO}
    assert len(ORACLE_REQUIREMENTS) == len(set(ORACLE_REQUIREMENTS))
    catalog = requirements()
    assert all(catalog[r].binds == "server" for r in ORACLE_REQUIREMENTS)


def test_case_gates_default_from_the_cited_requirements() -> None:
    """Every case is gated at least as its cited requirements' catalog entries say, and a case's
    file never restates a gate the catalog already implies (only additions for its own method)."""
    for case in all_cases():
        capabilities, fixtures, needs = catalog_gates(case.requirements)
        assert set(capabilities) <= set(case.capabilities), case.id
        assert case.fixtures or not fixtures, case.id
        assert set(needs) <= set(case.needs), case.id
    restated = []
    for path in sorted((ROOT / "conformance" / "cases").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "case"):
                continue
            case_id = ast.literal_eval(node.args[0])
            cited = ast.literal_eval(node.args[2])
            capabilities, fixtures, needs = catalog_gates(cited)
            for keyword in node.keywords:
                given = (
                    ast.literal_eval(keyword.value)
                    if keyword.arg in ("capabilities", "needs", "fixtures")
                    else None
                )
                if keyword.arg == "capabilities" and set(given) & set(capabilities):
                    restated.append(f"{case_id}: capabilities {sorted(set(given) & set(capabilities))}")
                if keyword.arg == "needs" and set(given) & set(needs):
                    restated.append(f"{case_id}: needs {sorted(set(given) & set(needs))}")
                if keyword.arg == "fixtures" and given and fixtures:
                    restated.append(f"{case_id}: fixtures")
    assert restated == [], "gates the catalog already implies, restated in the case:\n" + "\n".join(restated)


def test_compliance_levels_are_the_catalogs() -> None:
    """The report's levels are requirements.yaml's, in its order; the report schema names the same
    levels; a level's `declares` are registry capabilities; the loader refuses unknown keys."""
    assert tuple(compliance_levels()) == LEVELS and len(LEVELS) >= 3
    schema = json.loads((ROOT / "conformance" / "report" / "report.schema.json").read_text())
    compliance = schema["properties"]["compliance"]
    assert set(compliance["required"]) == set(LEVELS) == set(compliance["properties"])
    for level in compliance_levels().values():
        assert set(level.declares) <= set(capabilities())
    with pytest.raises(CatalogError, match="unknown key"):
        parse_levels({"core": {"adds": {"level": ["MUST"], "capability": "none"}, "also": 1}})
    with pytest.raises(CatalogError, match="not a level defined before"):
        parse_levels({"full": {"extends": "core", "adds": {"level": ["MUST"], "capability": "any"}}})
    with pytest.raises(CatalogError, match="capability"):
        parse_levels({"core": {"adds": {"level": ["MUST"], "capability": "some"}}})


def test_one_rule_decides_what_fails_a_run() -> None:
    """`outcomes.fails` (through `Report.fails`) is the one home of "which results fail a run": the
    exit code, the JUnit report and the terminal agree with it for every outcome, under every
    --fail-on and --strict."""
    for fail_on in (None, *SEVERITIES):
        for strict in (False, True):
            for outcome in Outcome:
                result = CaseResult("x.case", "a case", "transport", ["ASP-TRN-001"], outcome, 0.0, "why")
                report = Report(target="ws://x", started="now", duration_s=0.0, terms=None, strict=strict)
                report.fail_on = fail_on
                report.results = [result]
                suite = ElementTree.fromstring(to_junit(report).split("?>", 1)[1])
                junit_fails = int(suite.get("failures", "0")) + int(suite.get("errors", "0")) > 0
                marked = any(line.startswith("!") for line in to_terminal(report).splitlines())
                expected = fails(result, fail_on or ("warning" if strict else "error"))
                assert report.fails(result) == expected, (outcome, strict, fail_on, "Report.fails")
                assert junit_fails == expected, (outcome, strict, fail_on, "junit")
                assert marked == expected, (outcome, strict, fail_on, "terminal")
                assert (report.exit_code() != EXIT_OK) == expected, (outcome, strict, fail_on, "exit code")
                if not strict and fail_on is None:
                    assert expected == blocks(outcome, False)
