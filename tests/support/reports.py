"""Structural checks of the kit's CI reports: SARIF against the official OASIS schema (vendored in
tests/data, never downloaded), JUnit XML against the shape CI servers read (Jenkins, GitLab, the
GitHub test reporters: the junit-10 XSD's elements and counters).

tests/data/sarif-schema-2.1.0.json is `sarif-2.1/schema/sarif-schema-2.1.0.json` of
github.com/oasis-tcs/sarif-spec at e0583813964ec43cea53b6b531b402866095ed1f, byte for byte: the
OASIS SARIF 2.1.0 errata 01 schema (JSON Schema draft 04).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from jsonschema import Draft4Validator

SARIF_SCHEMA = Path(__file__).resolve().parents[1] / "data" / "sarif-schema-2.1.0.json"
_TESTCASE_CHILDREN = {"properties", "failure", "error", "skipped", "system-out", "system-err"}


def sarif_errors(document: dict[str, Any]) -> list[str]:
    """Every violation of the SARIF 2.1.0 schema (OASIS errata 01, JSON Schema draft 04)."""
    schema = json.loads(SARIF_SCHEMA.read_text())
    Draft4Validator.check_schema(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in Draft4Validator(schema).iter_errors(document)]


def junit_errors(suite: ElementTree.Element) -> list[str]:
    """What a JUnit consumer would trip over: the element names, the required attributes, the
    counters agreeing with the testcases, at most one verdict element per testcase."""
    problems = []
    if suite.tag != "testsuite":
        problems.append(f"root is <{suite.tag}>, not <testsuite>")
    for name in ("name", "tests", "failures", "errors", "skipped", "time"):
        if suite.get(name) is None:
            problems.append(f"testsuite has no {name}")
    cases = suite.findall("testcase")
    if any(child.tag not in ("testcase", "properties", "system-out", "system-err") for child in suite):
        problems.append("testsuite holds an element JUnit does not define")
    counted = {"failures": "failure", "errors": "error", "skipped": "skipped"}
    for attribute, tag in counted.items():
        actual = sum(c.find(tag) is not None for c in cases)
        if suite.get(attribute) != str(actual):
            problems.append(
                f"testsuite {attribute}={suite.get(attribute)} but {actual} testcases have <{tag}>"
            )
    if suite.get("tests") != str(len(cases)):
        problems.append(f"testsuite tests={suite.get('tests')} but {len(cases)} testcases")
    for case in cases:
        label = case.get("name")
        if not label or not case.get("classname"):
            problems.append(f"testcase without name or classname: {case.attrib}")
        try:
            float(case.get("time", ""))
        except ValueError:
            problems.append(f"{label}: time {case.get('time')!r} is not seconds")
        if {child.tag for child in case} - _TESTCASE_CHILDREN:
            problems.append(f"{label}: unknown children {[c.tag for c in case]}")
        if sum(case.find(tag) is not None for tag in ("failure", "error", "skipped")) > 1:
            problems.append(f"{label}: more than one of failure, error, skipped")
    return problems
