"""The report options `asp check` and `asp check-client` share, and the one place that writes them.

`add_arguments` declares them; `usage_problem` checks them before anything runs (a `--fail-on`
outside error|warning|info, a report path that cannot be written); `emit` sets the report's
threshold, writes every requested file and prints the GitHub Actions annotations. The formats
themselves are pure functions in `writers`, `sarif`, `html` and `github`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TextIO

from conformance.outcomes import SEVERITIES
from conformance.report import github, writers
from conformance.report.model import Report
from conformance.report.sarif import to_sarif

# (format, flag, help): every file a check can write.
FILES = (
    ("json", "--json-file", "write the JSON report here"),
    ("junit", "--junit-file", "write JUnit XML here (a failing testcase carries its wire log in system-out)"),
    ("html", "--html-file", "write the HTML report here (summary table first, wire logs collapsed)"),
    ("sarif", "--sarif-file", "write SARIF 2.1.0 here (one result per failing requirement)"),
    ("traceability", "--traceability", "write the traceability matrix (Markdown) here"),
)
SUMMARY_VARIABLE = "GITHUB_STEP_SUMMARY"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the report files, `--fail-on`, `--spec-url`, `--sarif-location` and `--github-actions`."""
    for kind, flag, text in FILES:
        parser.add_argument(flag, metavar="FILE", dest=f"{kind}_file", help=text)
    parser.add_argument(
        "--fail-on",
        metavar="LEVEL",
        help="least severity that fails the run: error (default: a MUST broken), warning (also a SHOULD "
        "missed: --strict), info (also a MAY not taken)",
    )
    parser.add_argument(
        "--spec-url",
        metavar="URL",
        help="base URL of a published `asp spec site`: SARIF rules link to URL/index.html#REQUIREMENT-ID",
    )
    parser.add_argument(
        "--sarif-location",
        metavar="PATH",
        help="repository-relative file every SARIF result is also located at (the code that serves the "
        "endpoint): GitHub code scanning refuses results without a file",
    )
    parser.add_argument(
        "--github-actions",
        action="store_true",
        help="print ::error / ::warning / ::notice annotations, one per failing requirement, and append "
        f"a job summary (Markdown) to ${SUMMARY_VARIABLE}",
    )


def unwritable(path: Path) -> str | None:
    """Why a report cannot be written to `path` (a phrase: "is a directory", "its directory D does
    not exist", ...), or None; checked before a run so a long run never ends on a write that fails."""
    if path.is_dir():
        return "is a directory"
    if not path.parent.is_dir():
        return f"its directory {path.parent} does not exist"
    if path.exists() and not os.access(path, os.W_OK):
        return "is not writable"
    if not path.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
        return f"its directory {path.parent} is not writable"
    return None


def usage_problem(args: argparse.Namespace) -> str | None:
    """The first usage error in the report options, as one sentence, or None when they are usable."""
    if args.fail_on is not None and args.fail_on not in SEVERITIES:
        return f"--fail-on takes {', '.join(SEVERITIES)}, not {args.fail_on!r}"
    if args.fail_on == "error" and args.strict:
        return "--strict is --fail-on warning: give one of them"
    targets = [(flag, getattr(args, f"{kind}_file")) for kind, flag, _ in FILES]
    if args.github_actions and os.environ.get(SUMMARY_VARIABLE):
        targets.append((f"${SUMMARY_VARIABLE}", os.environ[SUMMARY_VARIABLE]))
    for flag, target in targets:
        if target:
            why = unwritable(Path(target))
            if why:
                return f"cannot write {flag} {target}: {why}"
    return None


def emit(report: Report, args: argparse.Namespace, stdout: TextIO) -> str | None:
    """Set the report's `--fail-on`, write every requested file (the job summary appended), print
    the annotations to `stdout` under `--github-actions`. Returns a usage error (a file that could
    not be written after all) or None."""
    report.fail_on = args.fail_on
    for kind, flag, _ in FILES:
        target = getattr(args, f"{kind}_file")
        if not target:
            continue
        text = (
            to_sarif(report, args.spec_url, args.sarif_location)
            if kind == "sarif"
            else writers.FORMATS[kind](report)
        )
        try:
            Path(target).write_text(text, encoding="utf-8")
        except OSError as problem:
            return f"cannot write {flag} {target}: {problem.strerror or problem}"
    if args.github_actions:
        stdout.write(github.to_annotations(report))
        summary = os.environ.get(SUMMARY_VARIABLE)
        if summary:
            try:
                with open(summary, "a", encoding="utf-8") as out:
                    out.write(github.to_job_summary(report) + "\n")
            except OSError as problem:
                return f"cannot write ${SUMMARY_VARIABLE} {summary}: {problem.strerror or problem}"
    return None
