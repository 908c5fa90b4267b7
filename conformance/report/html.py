"""The HTML report from a `Report`, in Autobahn|Testsuite's shape: a pure function, no I/O.

A summary table comes first (case, requirement IDs, outcome, time), failures first, each row
linking to its case's section (`report.html#CASE_ID`), with a filter by outcome; then the failing
requirements; then one section per case: a one-line summary that opens to its findings and its wire
log (one collapsed `<details>` per connection). Cases that did not pass start open. Rendered with
Jinja2 templates (`templates/`), autoescaped.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from conformance.outcomes import SEVERITY, CaseResult, Outcome
from conformance.report.model import KIT_VERSION, LEVELS, Report, log_label
from spec import PROTOCOL_VERSION
from spec.catalog import requirements

TEMPLATES = Path(__file__).with_name("templates")
# Outcomes whose case starts collapsed (its summary line says it all); the others start open.
QUIET = ("pass", "info", "not_applicable")
COLOURS = {
    "pass": "#1a7f37",
    "fail": "#cf222e",
    "warning": "#9a6700",
    "harness_error": "#8250df",
    "stale_baseline": "#cf222e",
    "expected_failure": "#57606a",
    "not_applicable": "#57606a",
    "untestable": "#57606a",
    "info": "#0969da",
}


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _frame(frame: dict[str, Any]) -> dict[str, Any]:
    body = frame.get("text")
    if body is None:
        body = " ".join(str(frame[k]) for k in ("code", "reason") if frame.get(k) not in (None, ""))
    return {"t": float(frame.get("t", 0.0)), "direction": str(frame.get("direction", "")), "body": body}


def _case(result: CaseResult, report: Report) -> dict[str, Any]:
    return {
        "id": result.case_id,
        "title": result.title,
        "requirements": result.requirements,
        "outcome": result.outcome.value,
        "fails": report.fails(result),
        "duration_s": result.duration_s,
        "reason": result.reason,
        "findings": result.findings,
        "logs": [
            (log_label(frames, number), [_frame(f) for f in frames])
            for number, frames in enumerate(result.transcripts, start=1)
        ],
    }


def ordered(report: Report) -> list[CaseResult]:
    """Every result, failures first (in `SEVERITY` order), the run's order within one outcome."""
    results = report.everything
    return sorted(results, key=lambda r: (not report.fails(r), SEVERITY.index(r.outcome)))


def to_html(report: Report) -> str:
    """The whole report as one self-contained HTML page (inline CSS and a small filter script)."""
    catalog = requirements()
    cases = [_case(r, report) for r in ordered(report)]
    present = list(dict.fromkeys(c["outcome"] for c in cases))
    rows = {o: sum(c["outcome"] == o for c in cases) for o in present}  # the filter counts rows
    terms = report.terms
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            report=report,
            heading="ASP conformance report"
            if report.judges == "server"
            else "ASP client conformance report",
            spec_version=PROTOCOL_VERSION,
            kit_version=KIT_VERSION,
            exit_code=report.exit_code(),
            rows=rows,
            outcomes=[o.value for o in Outcome if o.value in present],
            compliance=[(name, report.compliance()[name]) for name in LEVELS],
            problems=report.problems(),
            catalog=catalog,
            cases=cases,
            colours=COLOURS,
            quiet=QUIET,
            server_version=str(terms.session.get("protocol_version", "")) if terms else "",
            capabilities=sorted(terms.capabilities) if terms else [],
        )
    )
