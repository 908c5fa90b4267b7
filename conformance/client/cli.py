"""`asp check-client --command CMD`: judge an ASP client through the driver contract."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import traceback
from pathlib import Path
from typing import Any

from conformance.outcomes import EXIT_USAGE


def _usage(message: str) -> int:
    print(f"asp check-client: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _split(values: list[str] | None) -> list[str]:
    return [item.strip() for value in values or [] for item in value.split(",") if item.strip()]


def _list(args: argparse.Namespace) -> int:
    """`--list`: the scenarios `--cases` / `--exclude` select, one a line, then their count."""
    from conformance.client.options import ClientCheckOptions
    from conformance.client.runner import selected, unknown_selectors
    from conformance.client.scenarios import all_scenarios

    everything = all_scenarios()
    options = ClientCheckOptions(command=[], include=_split(args.cases), exclude=_split(args.exclude))
    unknown = unknown_selectors(options)
    if unknown:
        return _usage(f"--cases/--exclude name no scenario: {', '.join(unknown)} (see --list)")
    scenarios = selected(everything, options)
    for item in scenarios:
        since = f"  [since {item.since}]" if item.since != "1.0" else ""
        print(f"{item.id:44} {' '.join(item.requirements)}{since}")
    print(
        f"{len(scenarios)} scenarios"
        + (f" of {len(everything)}" if len(scenarios) != len(everything) else "")
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    from rich.console import Console

    from conformance.baseline import Baseline
    from conformance.client.options import ClientCheckOptions
    from conformance.client.process import CannotStart
    from conformance.client.runner import run_client_check, unknown_selectors
    from conformance.options import UsageError, positive
    from conformance.report import outputs, writers
    from spec.catalog import parse_version

    problem = outputs.usage_problem(args)
    if problem:
        return _usage(problem)
    try:
        command = shlex.split(args.command)
        parse_version(args.protocol_version)
    except ValueError as problem:
        return _usage(str(problem))
    if not command:
        return _usage("--command is empty")
    known = known_versions()
    if args.protocol_version not in known:
        given = args.protocol_version
        return _usage(f"--protocol-version {given} is not a version of ASP ({', '.join(known)})")
    if not positive(args.timeout_multiplier):
        return _usage(f"--timeout-multiplier must be a positive number, not {args.timeout_multiplier}")
    if args.expected_failures:
        try:
            Baseline.load(Path(args.expected_failures))
        except UsageError as problem:
            return _usage(str(problem))
    options = ClientCheckOptions(
        command=command,
        include=_split(args.cases),
        exclude=_split(args.exclude),
        strict=args.strict,
        expected_failures=Path(args.expected_failures) if args.expected_failures else None,
        timeout_multiplier=args.timeout_multiplier,
        protocol_version=args.protocol_version,
    )
    unknown = unknown_selectors(options)
    if unknown:
        return _usage(f"--cases/--exclude name no scenario: {', '.join(unknown)} (see --list)")
    # soft_wrap: a line is never broken mid-phrase when stdout is a pipe or a file
    console = Console(highlight=False, soft_wrap=True)

    def progress(result: Any) -> None:
        if not args.quiet:
            colour = {"pass": "green", "fail": "red", "warning": "yellow", "harness_error": "magenta"}.get(
                result.outcome.value, "dim"
            )
            console.print(
                f"[{colour}]{result.outcome.value:15}[/] {result.case_id} [dim]{result.duration_s:.2f}s[/]"
            )

    try:
        report = asyncio.run(run_client_check(options, progress))
    except CannotStart as problem:
        return _usage(str(problem))
    except Exception:
        traceback.print_exc()
        print("asp check-client: the kit failed (the traceback above)", file=sys.stderr)
        return EXIT_USAGE
    unwritten = outputs.emit(report, args, sys.stdout)
    console.print(writers.to_terminal(report), highlight=False, markup=False, soft_wrap=True)
    return _usage(unwritten) if unwritten else report.exit_code()


def register(commands: Any) -> None:
    from conformance.report import outputs

    check = commands.add_parser(
        "check-client",
        help="judge an ASP client run as a command (spec/CLIENT-DRIVER.md)",
        description="Start a scripted, misbehaving ASP server for each scenario, run the client under test "
        "as COMMAND with ASP_URL, ASP_TOKEN and ASP_SCENARIO in its environment, speak the driver contract "
        "on its standard input and output, and judge what it does on the wire and what it reports. "
        "Exit 0: every applicable scenario passed (warnings allowed unless --strict); 1: a failure, a stale "
        "baseline entry, or a client that does not work at all; 2: a usage error or the kit's own error.",
    )
    check.add_argument(
        "--command", help="the client under test, split like a POSIX shell (no shell features)"
    )
    check.add_argument(
        "--cases", action="append", help="only these scenario ids, requirement ids or sections"
    )
    check.add_argument(
        "--exclude", action="append", help="skip these scenario ids, requirement ids or sections"
    )
    check.add_argument("--strict", action="store_true", help="missed SHOULDs fail the run")
    check.add_argument("--expected-failures", help="baseline file of expected failures")
    check.add_argument(
        "--timeout-multiplier", type=float, default=1.0, help="scale every wait and the late timing tolerance"
    )
    check.add_argument(
        "--protocol-version",
        default=_spec_version(),
        help="the ASP version the client is held to (MAJOR.MINOR)",
    )
    outputs.add_arguments(check)
    check.add_argument("--quiet", action="store_true", help="no per-scenario progress lines")
    check.add_argument(
        "--list",
        action="store_true",
        help="list the scenarios --cases / --exclude select, with their count, and exit",
    )
    check.set_defaults(
        handler=lambda args: (
            _list(args) if args.list else (_check(args) if args.command else _usage("--command is required"))
        )
    )


def known_versions() -> list[str]:
    """The protocol versions the catalog knows, oldest first: every requirement's `since` and the
    catalog's own version (spec/requirements.yaml)."""
    from spec import PROTOCOL_VERSION
    from spec.catalog import FIRST_VERSION, parse_version, requirements

    versions = {FIRST_VERSION, PROTOCOL_VERSION, *(r.since for r in requirements().values())}
    return sorted(versions, key=parse_version)


def _spec_version() -> str:
    from spec import PROTOCOL_VERSION

    return PROTOCOL_VERSION
