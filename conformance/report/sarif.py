"""SARIF 2.1.0 (OASIS, errata 01) from a `Report`: a pure function, no I/O.

One `run` of the tool "asp check" (or "asp check-client"); its rules are the catalog's requirements
binding the judged party (ruleId = requirement ID, description = the requirement's statement,
default level from MUST / SHOULD / MAY); one `result` per failing requirement (`Report.problems`),
with the cases that saw it as logical locations. A requirement a baseline expects to fail carries
an external suppression. What fails with no requirement to name (the kit's own errors, stale
baseline entries, a probe that could not connect) is a tool execution notification;
`executionSuccessful` is false when the kit erred or the check could not be made as asked.

A server URL is no source file, but GitHub code scanning refuses a whole log if a result has no
physical location ("locationFromSarifResult: expected artifact location"): given `artifact` (a
repository-relative path, such as the file that implements the endpoint), every result is anchored
there too, beside its logical locations.
"""

from __future__ import annotations

import json
from typing import Any

from conformance.outcomes import LEVEL_SEVERITY, Outcome
from conformance.report.model import KIT_VERSION, Problem, Report
from spec import PROTOCOL_VERSION
from spec.catalog import Requirement, requirements

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
# Report severities to SARIF levels.
SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
COMMANDS = {"server": "asp check", "client": "asp check-client"}


def _rule(requirement: Requirement, spec_url: str | None) -> dict[str, Any]:
    level = SARIF_LEVEL[LEVEL_SEVERITY[requirement.level]]
    how = requirement.method + (f" (capability {requirement.capability})" if requirement.capability else "")
    rule: dict[str, Any] = {
        "id": requirement.id,
        "shortDescription": {"text": f"{requirement.level}: {requirement.statement}"},
        "fullDescription": {"text": requirement.statement},
        "defaultConfiguration": {"level": level},
        "help": {
            "text": f"{requirement.id} ({requirement.level}, binds {requirement.binds}, since "
            f"{requirement.since}, section {requirement.section}): {requirement.statement} Tested: {how}.",
            "markdown": f"**{requirement.id}** ({requirement.level}, binds {requirement.binds}, since "
            f"{requirement.since}, section `{requirement.section}`)\n\n{requirement.statement}\n\n"
            f"Tested: {how}. See spec/PROTOCOL.md and spec/requirements.yaml.",
        },
        "properties": {"tags": [requirement.level, requirement.section, requirement.binds]},
    }
    if spec_url:
        rule["helpUri"] = f"{spec_url.rstrip('/')}/index.html#{requirement.id}"
    return rule


def _result(problem: Problem, index: int, report: Report, artifact: str | None) -> dict[str, Any]:
    location: dict[str, Any] = {
        "logicalLocations": [
            {"name": case, "fullyQualifiedName": f"{report.target}#{case}", "kind": "test"}
            for case in problem.cases
        ]
    }
    if artifact:
        location["physicalLocation"] = {"artifactLocation": {"uri": artifact}}
    result: dict[str, Any] = {
        "ruleId": problem.rule,
        "ruleIndex": index,
        "kind": "fail",
        "level": SARIF_LEVEL[problem.severity],
        "message": {"text": f"{problem.rule} not met {problem.text()}"},
        "locations": [location],
        "partialFingerprints": {"aspRequirement/v1": f"{report.judges}|{problem.rule}"},  # stable across runs
        "properties": {"cases": problem.cases, "messages": problem.messages},
    }
    if problem.expected is not None:
        result["suppressions"] = [{"kind": "external", "justification": problem.expected}]
    return result


def as_sarif(report: Report, spec_url: str | None = None, artifact: str | None = None) -> dict[str, Any]:
    """The SARIF log as a JSON-ready dict. `spec_url` is the base URL of a published `asp spec site`
    (rules then get `helpUri` BASE/index.html#ID); without it rules carry their help text only.
    `artifact` is a repository-relative path every result is also located at (see above)."""
    catalog = requirements()
    rules = [r for r in catalog.values() if r.binds == report.judges]
    index = {r.id: i for i, r in enumerate(rules)}
    problems = report.problems()
    unruled = [p for p in problems if p.rule is None]
    erred = any(r.outcome == Outcome.HARNESS_ERROR for r in report.everything)
    return {
        "$schema": SARIF_SCHEMA_URI,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": COMMANDS[report.judges],
                        "fullName": f"Agent Stream Protocol conformance kit ({COMMANDS[report.judges]})",
                        "version": KIT_VERSION,
                        "semanticVersion": KIT_VERSION,
                        "properties": {"protocolVersion": PROTOCOL_VERSION},
                        "rules": [_rule(r, spec_url) for r in rules],
                    }
                },
                "invocations": [
                    {
                        "executionSuccessful": not erred and report.usage_error is None,
                        "exitCode": report.exit_code(),
                        "startTimeUtc": report.started,
                        "toolExecutionNotifications": [
                            {"level": SARIF_LEVEL[p.severity], "message": {"text": f"{p.title}: {p.text()}"}}
                            for p in unruled
                        ]
                        + (
                            [{"level": "error", "message": {"text": report.usage_error}}]
                            if report.usage_error
                            else []
                        ),
                        "properties": {"failOn": report.threshold},
                    }
                ],
                "results": [
                    _result(p, index[p.rule], report, artifact)
                    for p in problems
                    if p.rule is not None and p.rule in index
                ],
                "properties": {
                    "target": report.target,
                    "judges": report.judges,
                    "protocolVersion": report.protocol_version or "",
                    "compliance": {name: level.verdict for name, level in report.compliance().items()},
                },
            }
        ],
    }


def to_sarif(report: Report, spec_url: str | None = None, artifact: str | None = None) -> str:
    """`as_sarif` as indented JSON text."""
    return json.dumps(as_sarif(report, spec_url, artifact), indent=2) + "\n"
