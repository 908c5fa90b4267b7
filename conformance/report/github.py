"""GitHub Actions output from a `Report`: pure functions, no I/O.

`to_annotations` gives one workflow command per problem (`::error title=ASP-ENV-002 (MUST)::...`,
a SHOULD `::warning`, a MAY or an expected failure `::notice`), escaped as the runner requires;
`to_job_summary` gives the Markdown a step appends to `$GITHUB_STEP_SUMMARY`: the verdict, the
counts, the compliance levels, the failing requirements and the cases that did not pass.
"""

from __future__ import annotations

from conformance.outcomes import Outcome
from conformance.report.model import LEVELS, Report
from spec.catalog import requirements

COMMAND = {"error": "error", "warning": "warning", "info": "notice"}
# GitHub truncates long annotations; a job summary holds at most 1 MiB.
MESSAGE_LIMIT = 900
CELL_LIMIT = 300


def escape_data(text: str) -> str:
    """A workflow command's message: `%`, CR and LF percent-encoded (actions/toolkit escapeData)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: as `escape_data`, and `:` and `,` too."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def to_annotations(report: Report) -> str:
    """One `::error` / `::warning` / `::notice` line per problem, worst first ("" when none)."""
    catalog = requirements()
    lines = []
    if report.usage_error:
        lines.append(f"::error title=asp check could not be made::{escape_data(report.usage_error)}")
    for problem in report.problems():
        if problem.rule is not None:
            title = f"{problem.rule} ({catalog[problem.rule].level})"
            body = f"{catalog[problem.rule].statement} Not met {problem.text()}"
        else:
            title, body = problem.title, problem.text()
        command = COMMAND[problem.severity]
        if problem.expected is not None:
            command, body = "notice", f"expected failure ({problem.expected}): {body}"
        if len(body) > MESSAGE_LIMIT:
            body = body[: MESSAGE_LIMIT - 1] + "…"
        lines.append(f"::{command} title={escape_property(title)}::{escape_data(body)}")
    return "".join(line + "\n" for line in lines)


def _cell(text: str) -> str:
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= CELL_LIMIT else flat[: CELL_LIMIT - 1] + "…"


def to_job_summary(report: Report) -> str:
    """The Markdown job summary: verdict, counts, compliance, failing requirements, cases not passed."""
    catalog = requirements()
    code = report.exit_code()
    verdict = {0: "passed", 1: "FAILED", 2: "could not be checked"}.get(code, f"exit {code}")
    what = "server" if report.judges == "server" else "client"
    lines = [
        f"## ASP {what} conformance: {verdict}",
        "",
        f"`{_cell(report.target)}`: {len(report.results)} cases in {report.duration_s:.1f} s, "
        f"protocol {report.protocol_version or 'unknown'}, fail on {report.threshold}, exit {code}.",
        "",
    ]
    if report.usage_error:
        lines += [f"**Could not check:** {_cell(report.usage_error)}", ""]
    counts = {k: v for k, v in report.counts().items() if v}
    lines += ["| outcome | cases |", "|---|---:|", *(f"| {k} | {v} |" for k, v in counts.items()), ""]
    compliance = report.compliance()
    lines += ["| level | verdict |", "|---|---|"]
    lines += [f"| {name} | {_cell(compliance[name].describe())} |" for name in LEVELS]
    lines.append("")
    problems = report.problems()
    if problems:
        lines += [
            "### Failing requirements",
            "",
            "| requirement | level | cases | finding |",
            "|---|---|---|---|",
        ]
        for problem in problems:
            level = catalog[problem.rule].level if problem.rule else "kit"
            name = problem.rule or problem.title
            if problem.expected is not None:
                level += " (expected)"
            lines.append(
                f"| {_cell(name)} | {level} | {_cell(', '.join(problem.cases))} | "
                f"{_cell('; '.join(problem.messages))} |"
            )
        lines.append("")
    others = [r for r in report.everything if r.outcome not in (Outcome.PASS, Outcome.INFO)]
    if others:
        lines += [
            "<details><summary>Cases that did not pass</summary>",
            "",
            "| case | requirements | outcome | time | reason |",
            "|---|---|---|---:|---|",
        ]
        lines += [
            f"| {r.case_id} | {' '.join(r.requirements)} | {r.outcome.value} | {r.duration_s:.2f} s "
            f"| {_cell(r.reason)} |"
            for r in others
        ]
        lines += ["", "</details>", ""]
    return "\n".join(lines)
