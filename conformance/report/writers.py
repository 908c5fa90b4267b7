"""The report in every format a CI or a person reads: pure functions of a `Report` to a string.

No I/O here; the caller decides where the strings go (`write` is the one helper that does).
Which results fail the run is `conformance.outcomes.blocks`, the same rule the exit code uses.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from conformance.outcomes import CaseResult, Outcome, blocks
from conformance.report.model import KIT_VERSION, LEVELS, Report
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
        "options": report.options,
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


def to_junit(report: Report) -> str:
    """JUnit XML: one testcase per case and per stale baseline entry (the oracle's violations fail
    the cases that saw them)."""
    listed = [*report.results, *report.stale]
    suite = ElementTree.Element(
        "testsuite", name="asp-conformance", tests=str(len(listed)), time=f"{report.duration_s:.3f}"
    )
    failing = [r for r in listed if blocks(r.outcome, report.strict)]
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
        detail = "\n".join(f"{f.requirement}: {f.message}" for f in result.findings if not f.passed)
        if result.outcome == Outcome.HARNESS_ERROR:
            ElementTree.SubElement(case, "error", message="harness error").text = result.reason
        elif blocks(result.outcome, report.strict):
            failure = ElementTree.SubElement(
                case, "failure", message=result.reason[:500], type=result.outcome.value
            )
            failure.text = detail or result.reason
        elif result.outcome in (Outcome.NOT_APPLICABLE, Outcome.UNTESTABLE):
            ElementTree.SubElement(case, "skipped", message=f"{result.outcome.value}: {result.reason}")
        elif result.outcome == Outcome.WARNING:
            ElementTree.SubElement(case, "system-out").text = f"warning (SHOULD missed): {detail}"
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


_COLOURS = {
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


def to_html(report: Report) -> str:
    data = as_json(report)
    e = html.escape
    rows = []
    shown = [*data["cases"], *([data["oracle"]] if data["oracle"] else []), *data["stale_baseline"]]
    for case in shown:
        colour = _COLOURS.get(case["outcome"], "#000")
        findings = "".join(
            f"<li class='{'ok' if f['passed'] else 'bad'}'><b>{e(f['requirement'])}</b> {e(f['message'])}"
            f" <i>({e(f['source'])})</i></li>"
            for f in case["findings"]
        )
        transcripts = ""
        for number, frames in enumerate(case["transcripts"], start=1):
            lines = "".join(_wire_row(frame) for frame in frames)
            transcripts += (
                f"<details><summary>connection {number} ({len(frames)} frames)</summary>"
                f"<table class='wire'>{lines}</table></details>"
            )
        rows.append(
            f"<section id='{e(case['id'])}'><h3><span class='badge' style='background:{colour}'>"
            f"{e(case['outcome'])}</span> {e(case['id'])}</h3><p>{e(case['title'])}</p>"
            f"<p class='reqs'>{' '.join(e(r) for r in case['requirements'])} &middot; "
            f"{case['duration_s']:.2f}s</p>"
            f"{'<p class=reason>' + e(case['reason']) + '</p>' if case['reason'] else ''}"
            f"<ul>{findings}</ul>{transcripts}</section>"
        )
    summary = " ".join(
        f"<span class='badge' style='background:{_COLOURS.get(k, '#000')}'>{e(k)} {v}</span>"
        for k, v in data["summary"].items()
        if v
    )
    compliance = "; ".join(f"{name} {level.describe()}" for name, level in report.compliance().items())
    server = data["server"]
    refusal = f"<p class=reason>{e(report.usage_error)}</p>" if report.usage_error else ""
    judged = (
        f"<p>Server protocol {e(server['protocol_version'])}; "
        f"capabilities {e(', '.join(server['capabilities']))}</p>"
        if report.judges == "server"
        else f"<p>Client held to protocol {e(report.held_to or '')}; each scenario shows the wire log of "
        "every connection, then the client's standard input and output</p>"
    )
    heading = "ASP conformance report" if report.judges == "server" else "ASP client conformance report"
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>ASP conformance: {e(data['target'])}</title><style>{_CSS}</style></head><body>"
        f"<h1>{heading}</h1>"
        f"<p>Target <code>{e(data['target'])}</code> &middot; spec {e(data['spec_version'])} &middot; "
        f"kit {e(data['kit_version'])} &middot; {e(data['started'])} &middot; {data['duration_s']:.1f}s "
        f"&middot; exit {data['exit_code']}</p>{refusal}{judged}"
        f"<p>{len(data['cases'])} cases: {summary}</p><p>Compliance: {e(compliance)}</p>"
        f"{''.join(rows)}</body></html>"
    )


def _wire_row(frame: dict[str, Any]) -> str:
    e = html.escape
    body = e(frame.get("text") or "") + e(str(frame.get("code", ""))) + " " + e(frame.get("reason") or "")
    direction = e(frame["direction"])
    cells = f"<td>{frame['t']:.3f}</td><td>{direction}</td><td><code>{body}</code></td>"
    return f"<tr class='{direction}'>{cells}</tr>"


_CSS = " ".join(
    [
        "body{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}",
        ".badge{color:#fff;border-radius:4px;padding:1px 6px;font-size:12px}",
        "section{border-top:1px solid #ddd;padding:.5em 0} h3{margin:.3em 0} .reqs{color:#57606a}",
        "li.bad{color:#cf222e} li.ok{color:#1a7f37} table.wire{border-collapse:collapse;font-size:12px}",
        "table.wire td{border-bottom:1px solid #eee;padding:2px 6px;vertical-align:top}",
        "tr.send td{background:#f6f8fa} tr.close td{background:#fff8c5}",
        "code{white-space:pre-wrap;word-break:break-all}",
    ]
)


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


def to_terminal(report: Report) -> str:
    """A plain-text summary: what did not pass and why, the counts, compliance, the exit code."""
    lines = []
    if report.usage_error:
        lines.append(f"cannot check {report.target}: {report.usage_error}")
    elif report.terms is None and report.judges == "server":
        reason = report.results[0].reason if report.results else "the probe failed"
        lines.append(f"cannot check {report.target}: {reason}")
    for result in report.everything:
        if result.outcome in (Outcome.PASS, Outcome.INFO):
            continue
        first_line = result.reason.splitlines()[0] if result.reason else ""
        marker = "!" if blocks(result.outcome, report.strict) else " "
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
    compliance = report.compliance()
    lines.extend(f"compliance {name}: {compliance[name].describe()}" for name in LEVELS)
    lines.append(f"exit {report.exit_code()}")
    return "\n".join(lines)


FORMATS = {"json": to_json, "junit": to_junit, "html": to_html, "traceability": to_traceability}


def write(report: Report, path: Path, kind: str) -> None:
    """Write the report in format `kind` (a key of FORMATS) to `path`."""
    path.write_text(FORMATS[kind](report), encoding="utf-8")
