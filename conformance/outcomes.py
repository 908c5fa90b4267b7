"""Verdicts, in the manner of Autobahn and the MCP suite: never a silent skip."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from spec.catalog import requirement


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"  # a MUST broken
    WARNING = "warning"  # a SHOULD missed
    INFO = "info"  # informational, no requirement judged
    NOT_APPLICABLE = "not_applicable"  # capability not declared
    UNTESTABLE = "untestable"  # precondition missing (fixtures, credentials), with the reason
    HARNESS_ERROR = "harness_error"  # the kit's own fault
    EXPECTED_FAILURE = "expected_failure"  # failed, and listed in the baseline
    STALE_BASELINE = "stale_baseline"  # listed in the baseline, but passed


# Exit codes of `asp check` and `asp check-client` (Report.exit_code decides which): 0 nothing
# blocks the run, 1 something does, 2 the check could not be made as asked (or only the kit's own
# errors stand in the way).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

# Worst first: a case (or requirement) takes the worst outcome among its findings.
SEVERITY = [
    Outcome.HARNESS_ERROR,
    Outcome.STALE_BASELINE,
    Outcome.FAIL,
    Outcome.WARNING,
    Outcome.EXPECTED_FAILURE,
    Outcome.PASS,
    Outcome.INFO,
    Outcome.UNTESTABLE,
    Outcome.NOT_APPLICABLE,
]


def worst(outcomes: list[Outcome]) -> Outcome | None:
    return min(outcomes, key=SEVERITY.index) if outcomes else None


def blocks(outcome: Outcome, strict: bool) -> bool:
    """Whether a result with this outcome fails the run: the one rule used by the exit code, the
    JUnit report, the pytest plugin and the terminal. A missed SHOULD (warning) fails only under
    --strict; untestable, not applicable and expected failures never do."""
    if outcome in (Outcome.FAIL, Outcome.HARNESS_ERROR, Outcome.STALE_BASELINE):
        return True
    return strict and outcome == Outcome.WARNING


# How a requirement's outcome counts toward a compliance level (Report.compliance): a missed
# SHOULD fails the levels that hold it whatever --strict says; the rest neither fail nor prove one.
FAILS_A_LEVEL = frozenset({Outcome.FAIL, Outcome.WARNING, Outcome.EXPECTED_FAILURE})
LEAVES_A_LEVEL_UNPROVEN = frozenset({Outcome.UNTESTABLE, Outcome.HARNESS_ERROR, Outcome.STALE_BASELINE})


@dataclass
class Finding:
    """One judged statement inside a case."""

    requirement: str
    passed: bool
    message: str
    source: str = "case"  # "case" or "oracle"

    @property
    def outcome(self) -> Outcome:
        if self.passed:
            return Outcome.PASS
        return Outcome.FAIL if requirement(self.requirement).level == "MUST" else Outcome.WARNING

    def as_dict(self) -> dict[str, Any]:
        return {
            "requirement": self.requirement,
            "passed": self.passed,
            "message": self.message,
            "source": self.source,
            "outcome": self.outcome.value,
        }


@dataclass
class CaseResult:
    case_id: str
    title: str
    section: str
    requirements: list[str]
    outcome: Outcome
    duration_s: float
    reason: str = ""
    findings: list[Finding] = field(default_factory=list)
    transcripts: list[list[dict[str, Any]]] = field(default_factory=list)

    @property
    def failed_requirements(self) -> list[str]:
        return sorted({f.requirement for f in self.findings if not f.passed})


# Severities, worst first: SARIF's error / warning / note and GitHub's error / warning / notice.
# `--fail-on S` fails a run on every result of severity S or worse.
SEVERITIES = ("error", "warning", "info")
LEVEL_SEVERITY = {"MUST": "error", "SHOULD": "warning", "MAY": "info"}


def severity(result: CaseResult) -> str | None:
    """How bad a result is: "error" (a MUST broken, the kit's own error, a stale baseline entry),
    "warning" (a SHOULD missed), "info" (only a MAY not taken) or None (passed, informational, not
    applicable, untestable, expected). The level of a missed requirement is its catalog level."""
    if result.outcome in (Outcome.FAIL, Outcome.HARNESS_ERROR, Outcome.STALE_BASELINE):
        return "error"
    if result.outcome != Outcome.WARNING:
        return None
    missed = [LEVEL_SEVERITY[requirement(f.requirement).level] for f in result.findings if not f.passed]
    return min(missed, key=SEVERITIES.index) if missed else "warning"


def fails(result: CaseResult, fail_on: str) -> bool:
    """Whether `result` fails a run checked with `--fail-on fail_on` (a value of SEVERITIES).

    `fails(r, "error")` is `blocks(r.outcome, False)`; `--strict` is `--fail-on warning`.
    Raises ValueError for a `fail_on` outside SEVERITIES."""
    level = severity(result)
    return level is not None and SEVERITIES.index(level) <= SEVERITIES.index(fail_on)
