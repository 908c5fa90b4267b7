"""One home for each fact: the kit reads close codes, error requirements, the oracle's requirements,
case gates and compliance levels from spec/, and writes none of them down again (issue 11, 3)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conformance.registry import ORACLE_REQUIREMENTS, TOKEN_ECHO, all_cases, catalog_gates
from spec.catalog import requirements
from spec.machine import lifecycle
from spec.oracle import oracle_requirements
from spec.registry import close_code, close_codes

ROOT = Path(__file__).resolve().parents[2]
# The server kit: its modules, its cases and its report. (conformance/client/ plays the server
# to clients and names close codes in its scenario IDs; not covered yet.)
KIT = sorted(
    [
        *(ROOT / "conformance").glob("*.py"),
        *(ROOT / "conformance" / "cases").glob("*.py"),
        *(ROOT / "conformance" / "report").glob("*.py"),
    ]
)
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


def close_code_literals(path: Path) -> list[str]:
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
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {value}")
        elif isinstance(value, str) and CODE_IN_TEXT.search(value):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {value!r}")
    return found


def test_no_close_code_is_written_in_the_kit() -> None:
    """Close codes come from spec/registry.yaml by name (`close_code("unauthorized")`)."""
    assert len(KIT) > 20
    found = [literal for path in KIT for literal in close_code_literals(path)]
    assert found == [], "close codes written in the kit; use spec.registry.close_code(name):\n" + "\n".join(
        found
    )


def test_the_scanner_sees_a_literal() -> None:
    source = ROOT / "tests" / "conformance" / "_literal_probe.py"
    try:
        source.write_text(
            '"""4001 in a docstring is fine."""\nX = 4001  # a comment with 4002\nY = "closed 1013"\n'
        )
        assert [f.split(": ", 1)[1] for f in close_code_literals(source)] == ["4001", "'closed 1013'"]
    finally:
        source.unlink()


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
