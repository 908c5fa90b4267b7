"""The report in every format a CI or a person reads: pure functions of a `Report` to a string.

No I/O here; the caller decides where the strings go (`outputs.emit` is the one place that writes).
Which results fail the run is `Report.fails` (`--fail-on`), the same rule the exit code uses.
SARIF, GitHub Actions and HTML have modules of their own (`sarif`, `github`, `html`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from conformance.outcomes import CaseResult, Outcome, severity
from conformance.report.html import to_html
from conformance.report.model import KIT_VERSION, LEVELS, Report, log_label
from conformance.report.sarif import to_sarif
from spec import PROTOCOL_VERSION
from spec.catalog import requirements

REPORT_SCHEMA = Path(__file__).with_name("report.schema.json")
REPORT_VERSION = 2


def _case(result: CaseResult) -> dict[str, Any]:
    return {
        "id": result.case_id,
        "title": result.title,
        "section": result.section,
        "requirements": result.requirements,
        "outcome": result.outcome.value,
        "duration_s": result.duration_s,
        "reason": result.reason,
        "findings": [f.as_dict() for f in result.findings],
        "transcripts": result.transcripts,
    }


def as_json(report: Report) -> dict[str, Any]:
    """The report as a JSON-ready dict (the shape report.schema.json describes)."""
    catalog = requirements()
    terms = report.terms
    return {
        "report_version": REPORT_VERSION,
        "spec_version": PROTOCOL_VERSION,
        "kit_version": KIT_VERSION,
        "target": report.target,
        "started": report.started,
        "duration_s": report.duration_s,
        "options": {**report.options, "fail_on": report.threshold},
        "exit_code": report.exit_code(),
        "usage_error": report.usage_error,
        "judges": report.judges,
        **({"client": {"protocol_version": report.held_to or ""}} if report.judges == "client" else {}),
        "server": {
            "protocol_version": str(terms.session.get("protocol_version", "")) if terms else "",
            "capabilities": sorted(terms.capabilities) if terms else [],
            "limits": terms.limits if terms else {},
            "token_carriage": terms.carriage if terms else "",
        },
        "summary": report.counts(),
        "compliance": {name: level.as_dict() for name, level in report.compliance().items()},
        "cases": [_case(r) for r in report.results],
        "oracle": _case(report.oracle) if report.oracle else None,
        "stale_baseline": [_case(r) for r in report.stale],
        "requirements": {
            rid: {"level": catalog[rid].level, **entry} for rid, entry in report.requirement_results().items()
        },
    }


def to_json(report: Report) -> str:
    return json.dumps(as_json(report), indent=2) + "\n"


# XML 1.0 allows none of these: a fuzz case's frames may carry them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def transcript_text(result: CaseResult) -> str:
    """The case's wire log as plain text: per connection, one line per frame (`t` seconds from the
    connection's start, direction, text or close code and reason)."""
    lines = []
    for number, frames in enumerate(result.transcripts, start=1):
        lines.append(f"{log_label(frames, number)} ({len(frames)} frames)")
        for frame in frames:
            body = frame.get("text")
            if body is None:
                body = " ".join(str(frame[k]) for k in ("code", "reason") if frame.get(k) not in (None, ""))
            lines.append(f"  {float(frame.get('t', 0.0)):9.4f} {frame.get('direction', ''):6} {body}")
    return "\n".join(lines)


def to_junit(report: Report) -> str:
    """JUnit XML: one testcase per case and per stale baseline entry (the oracle's violations fail
    the cases that saw them). A failing or erroring testcase carries its findings in `failure` /
    `error` and its wire transcript in `system-out`; a warning that does not fail the run says so
    in `system-out`; untestable and not applicable cases are `skipped` with the reason."""
    listed = [*report.results, *report.stale]
    suite = ElementTree.Element(
        "testsuite", name="asp-conformance", tests=str(len(listed)), time=f"{report.duration_s:.3f}"
    )
    suite.set("timestamp", report.started)
    failing = [r for r in listed if report.fails(r)]
    errors = [r for r in failing if r.outcome == Outcome.HARNESS_ERROR]
    suite.set("failures", str(len(failing) - len(errors)))
    suite.set("errors", str(len(errors)))
    suite.set("skipped", str(sum(r.outcome in (Outcome.NOT_APPLICABLE, Outcome.UNTESTABLE) for r in listed)))
    for result in listed:
        case = ElementTree.SubElement(
            suite,
            "testcase",
            classname=f"asp.{result.section}",
            name=result.case_id,
            time=f"{result.duration_s:.3f}",
        )
        ElementTree.SubElement(case, "properties").extend(
            [ElementTree.Element("property", name="requirement", value=r) for r in result.requirements]
        )
        detail = _xml("\n".join(f"{f.requirement}: {f.message}" for f in result.findings if not f.passed))
        reason = _xml(result.reason)
        if result.outcome == Outcome.HARNESS_ERROR:
            ElementTree.SubElement(case, "error", message="harness error", type="harness_error").text = reason
        elif report.fails(result):
            failure = ElementTree.SubElement(case, "failure", message=reason[:500], type=result.outcome.value)
            failure.text = detail or reason
        elif result.outcome in (Outcome.NOT_APPLICABLE, Outcome.UNTESTABLE):
            ElementTree.SubElement(case, "skipped", message=f"{result.outcome.value}: {reason}")
        elif result.outcome == Outcome.WARNING:
            missed = f"{severity(result)}, not failing at --fail-on {report.threshold}"
            ElementTree.SubElement(case, "system-out").text = f"warning ({missed}): {detail}"
        if report.fails(result) and result.transcripts:
            ElementTree.SubElement(case, "system-out").text = _xml(transcript_text(result))
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


# Each traceability matrix lists the requirements binding the party its command judges.
MATRIX = {
    "server": ("asp check", "TRACEABILITY.md"),
    "client": ("asp check-client", "CLIENT-TRACEABILITY.md"),
}


def to_traceability(report: Report) -> str:
    """Markdown matrix of the requirements binding the judged party: level, cases, result on this run."""
    catalog = requirements()
    command, _ = MATRIX[report.judges]
    other_command, other_file = next(v for k, v in MATRIX.items() if k != report.judges)
    lines = [
        "# ASP traceability matrix" + (" for clients" if report.judges == "client" else ""),
        "",
        f"Generated by `{command}` (kit {KIT_VERSION}) against `{report.target}` on {report.started}.",
        f"Requirements binding the other party are judged by `{other_command}`: see {other_file}.",
        "",
        "| requirement | level | binds | cases | result |",
        "|---|---|---|---|---|",
    ]
    for rid, entry in report.requirement_results().items():
        requirement = catalog[rid]
        if requirement.binds != report.judges:
            continue
        cases = ", ".join(f"`{c}`" for c in entry["cases"]) or "-"
        result = entry["outcome"] + (f" ({entry['reason']})" if entry["reason"] else "")
        lines.append(f"| {rid} | {requirement.level} | {requirement.binds} | {cases} | {result} |")
    return "\n".join(lines) + "\n"


# How CaseContext.real_time words a wait beyond --max-wait ("...; --max-wait 66 waits it out").
_WAITS_IT_OUT = re.compile(r"--max-wait (\d+) waits it out")


def _nothing_judged(report: Report) -> bool:
    """The server's first connection never became an ASP session and the probe blamed no
    requirement (nothing listens, or no ASP endpoint answered): there is nothing to list."""
    return (
        report.judges == "server"
        and report.terms is None
        and not report.usage_error
        and [(r.case_id, r.requirements) for r in report.results] == [("probe.first_connection", [])]
    )


def to_terminal(report: Report) -> str:
    """A plain-text summary: what did not pass and why, the counts, compliance, the exit code.

    When nothing could be judged (`_nothing_judged`), two lines: "cannot check URL: why" and the
    compliance line of counts; the probe's result, the case count and the exit code would only
    repeat the first line (the reports still hold the probe's result)."""
    lines = []
    if report.usage_error:
        lines.append(f"cannot check {report.target}: {report.usage_error}")
    elif report.terms is None and report.judges == "server":
        reason = report.results[0].reason if report.results else "the probe failed"
        lines.append(f"cannot check {report.target}: {reason}")
    compliance = report.compliance()
    if report.judges == "server" and report.terms is None:  # nothing reached: counts, not every ID
        untested = ", ".join(f"{name} {len(compliance[name].untestable)}" for name in LEVELS)
        levels = [f"compliance: not proven at any level, nothing could be checked (untested: {untested})"]
    else:
        levels = [f"compliance {name}: {compliance[name].describe()}" for name in LEVELS]
    if _nothing_judged(report):
        return "\n".join([*lines, *levels])
    for result in report.everything:
        if result.outcome in (Outcome.PASS, Outcome.INFO):
            continue
        first_line = result.reason.splitlines()[0] if result.reason else ""
        marker = "!" if report.fails(result) else ""
        lines.append(f"{marker}{result.outcome.value.upper():15} {result.case_id}: {first_line}")
        for finding in result.findings:
            if not finding.passed:
                lines.append(f"{'':16}   {finding.requirement} {finding.message[:160]}")
    counts = {k: v for k, v in report.counts().items() if v}
    lines.append("")
    lines.append(
        f"{len(report.results)} cases in {report.duration_s:.1f}s: "
        + ", ".join(f"{v} {k}" for k, v in counts.items())
    )
    if report.oracle is not None:
        lines.append(f"oracle over every frame: {report.oracle.outcome.value}")
    lines.extend(levels)
    waits = [
        (result.case_id, int(found.group(1)))
        for result in report.results
        if result.outcome == Outcome.UNTESTABLE and (found := _WAITS_IT_OUT.search(result.reason))
    ]
    if waits:  # the server announced waits longer than --max-wait: name the flag that proves them
        lines.append(
            f"--max-wait {max(n for _, n in waits)} would wait out what the server announced for "
            f"{len(waits)} untestable case{'s' if len(waits) > 1 else ''}: {', '.join(c for c, _ in waits)}"
        )
    threshold = "" if report.threshold == "error" else f" (fail on {report.threshold})"
    lines.append(f"exit {report.exit_code()}{threshold}")
    return "\n".join(lines)


FORMATS = {
    "json": to_json,
    "junit": to_junit,
    "html": to_html,
    "sarif": to_sarif,
    "traceability": to_traceability,
}
