"""The report in every format a CI or a person reads."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from conformance.outcomes import Outcome
from conformance.runner import KIT_VERSION, Report
from spec import PROTOCOL_VERSION
from spec.catalog import requirements

REPORT_SCHEMA = Path(__file__).with_name("report.schema.json")


def as_json(report: Report) -> dict[str, Any]:
    catalog = requirements()
    terms = report.terms
    return {
        "report_version": 1,
        "spec_version": PROTOCOL_VERSION,
        "kit_version": KIT_VERSION,
        "target": report.target,
        "started": report.started,
        "duration_s": report.duration_s,
        "options": report.options,
        "server": {
            "protocol_version": str(terms.session.get("protocol_version", "")) if terms else "",
            "capabilities": sorted(terms.capabilities) if terms else [],
            "limits": terms.limits if terms else {},
        },
        "summary": report.counts(),
        "compliance": report.compliance(),
        "cases": [
            {
                "id": r.case_id,
                "title": r.title,
                "section": r.section,
                "requirements": r.requirements,
                "outcome": r.outcome.value,
                "duration_s": r.duration_s,
                "reason": r.reason,
                "findings": [f.as_dict() for f in r.findings],
                "transcripts": r.transcripts,
            }
            for r in report.results
        ],
        "requirements": {
            rid: {"level": catalog[rid].level, **entry} for rid, entry in report.requirement_results().items()
        },
    }


def write_json(report: Report, path: Path) -> None:
    path.write_text(json.dumps(as_json(report), indent=2) + "\n", encoding="utf-8")


def write_junit(report: Report, path: Path) -> None:
    suite = ElementTree.Element(
        "testsuite", name="asp-conformance", tests=str(len(report.results)), time=f"{report.duration_s:.3f}"
    )
    counts = report.counts()
    suite.set(
        "failures",
        str(
            counts["fail"]
            + counts["stale_baseline"]
            + (counts["warning"] if report.options.get("strict") else 0)
        ),
    )
    suite.set("errors", str(counts["harness_error"]))
    suite.set("skipped", str(counts["not_applicable"] + counts["untestable"]))
    for result in report.results:
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
        if result.outcome in (Outcome.FAIL, Outcome.STALE_BASELINE) or (
            result.outcome == Outcome.WARNING and report.options.get("strict")
        ):
            failure = ElementTree.SubElement(
                case, "failure", message=result.reason[:500], type=result.outcome.value
            )
            failure.text = detail or result.reason
        elif result.outcome == Outcome.HARNESS_ERROR:
            ElementTree.SubElement(case, "error", message="harness error").text = result.reason
        elif result.outcome in (Outcome.NOT_APPLICABLE, Outcome.UNTESTABLE):
            ElementTree.SubElement(case, "skipped", message=f"{result.outcome.value}: {result.reason}")
        elif result.outcome == Outcome.WARNING:
            ElementTree.SubElement(case, "system-out").text = f"warning (SHOULD missed): {detail}"
    ElementTree.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


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


def write_html(report: Report, path: Path) -> None:
    data = as_json(report)
    e = html.escape
    rows = []
    for case in data["cases"]:
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
    compliance = ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in data["compliance"].items())
    server = data["server"]
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>ASP conformance: {e(data['target'])}</title><style>{_CSS}</style></head><body>"
        f"<h1>ASP conformance report</h1>"
        f"<p>Target <code>{e(data['target'])}</code> &middot; spec {e(data['spec_version'])} &middot; "
        f"kit {e(data['kit_version'])} &middot; {e(data['started'])} &middot; {data['duration_s']:.1f}s</p>"
        f"<p>Server protocol {e(server['protocol_version'])}; "
        f"capabilities {e(', '.join(server['capabilities']))}</p>"
        f"<p>{summary}</p><p>Compliance: {e(compliance)}</p>{''.join(rows)}</body></html>"
    )
    path.write_text(page, encoding="utf-8")


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


def write_traceability(report: Report, path: Path) -> None:
    """Markdown matrix: requirement, level, cases, result on this run."""
    catalog = requirements()
    lines = [
        "# ASP traceability matrix",
        "",
        f"Generated by `asp check` (kit {KIT_VERSION}) against `{report.target}` on {report.started}.",
        "",
        "| requirement | level | binds | cases | result |",
        "|---|---|---|---|---|",
    ]
    for rid, entry in report.requirement_results().items():
        requirement = catalog[rid]
        cases = ", ".join(f"`{c}`" for c in entry["cases"]) or "-"
        result = entry["outcome"] + (f" ({entry['reason']})" if entry["reason"] else "")
        lines.append(f"| {rid} | {requirement.level} | {requirement.binds} | {cases} | {result} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def terminal(report: Report, strict: bool) -> str:
    """A plain-text summary (rich renders it in colour on a terminal)."""
    lines = []
    for result in report.results:
        if result.outcome in (Outcome.PASS, Outcome.INFO):
            continue
        first_line = result.reason.splitlines()[0] if result.reason else ""
        lines.append(f"{result.outcome.value.upper():15} {result.case_id}: {first_line}")
        for finding in result.findings:
            if not finding.passed:
                lines.append(f"{'':15}   {finding.requirement} {finding.message[:160]}")
    counts = {k: v for k, v in report.counts().items() if v}
    lines.append("")
    lines.append(
        f"{len(report.results)} cases in {report.duration_s:.1f}s: "
        + ", ".join(f"{v} {k}" for k, v in counts.items())
    )
    lines.append(
        "compliance: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in report.compliance().items())
    )
    lines.append(f"exit {report.exit_code(strict)}")
    return "\n".join(lines)
