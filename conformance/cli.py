"""`asp check URL`: run the conformance cases against a server and write the reports."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from conformance.options import JWT_SECRET_VARIABLE, TOKEN_VARIABLE
from conformance.outcomes import EXIT_USAGE as EXIT_HARNESS


def _header(value: str) -> tuple[str, str]:
    name, sep, content = value.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError("headers are NAME:VALUE")
    return name.strip(), content.strip()


def _check(args: argparse.Namespace) -> int:
    from rich.console import Console

    from conformance.credentials import Credentials
    from conformance.options import CheckOptions, UsageError, load_token_file, parse_algorithms
    from conformance.report import outputs, writers
    from conformance.runner import run_check

    problem = outputs.usage_problem(args)
    if problem:
        return _usage(problem)
    try:
        tokens = list(args.token or ([os.environ[TOKEN_VARIABLE]] if os.environ.get(TOKEN_VARIABLE) else []))
        if args.token_file:
            tokens += load_token_file(Path(args.token_file))
        options = CheckOptions(
            url=args.url,
            tokens=tokens,
            jwt_secret=args.jwt_secret,
            headers=dict(args.header or []),
            timeout_multiplier=args.timeout_multiplier,
            max_wait_s=args.max_wait,
            max_connections=args.max_connections,
            include=_split(args.cases),
            exclude=_split(args.exclude),
            strict=args.strict,
            expected_failures=Path(args.expected_failures) if args.expected_failures else None,
            fuzz_examples=args.fuzz_examples,
            jwt_algorithms=parse_algorithms(args.jwt_algorithms),
        )
        options.validate()
    except (UsageError, OSError) as problem:
        return _usage(str(problem))
    credentials = Credentials(options)
    # soft_wrap: a line is never broken mid-phrase when stdout is a pipe or a file
    console = Console(stderr=False, highlight=False, soft_wrap=True)

    def progress(result: Any) -> None:
        if not args.quiet:
            colour = {"pass": "green", "fail": "red", "warning": "yellow", "harness_error": "magenta"}.get(
                result.outcome.value, "dim"
            )
            console.print(
                f"[{colour}]{result.outcome.value:15}[/] {result.case_id} [dim]{result.duration_s:.2f}s[/]",
                highlight=False,
            )

    try:
        report = asyncio.run(run_check(options, progress, credentials=credentials))
    except UsageError as problem:
        return _usage(str(problem))
    except Exception:
        print(credentials.redact(traceback.format_exc()), file=sys.stderr)
        print("asp check: the kit failed (the traceback above, tokens redacted)", file=sys.stderr)
        return EXIT_HARNESS
    unwritten = outputs.emit(report, args, sys.stdout)
    if unwritten:
        return _usage(unwritten)
    if report.usage_error:  # refused credentials: the one line says it all (the reports hold the rest)
        return _usage(report.usage_error)
    console.print(writers.to_terminal(report), highlight=False, markup=False, soft_wrap=True)
    return report.exit_code()


def _usage(message: str) -> int:
    print(f"asp check: error: {message}", file=sys.stderr)
    return EXIT_HARNESS


def _split(values: list[str] | None) -> list[str]:
    return [item.strip() for value in values or [] for item in value.split(",") if item.strip()]


def _list_cases(args: argparse.Namespace) -> int:
    """`--list`: the cases `--cases` / `--exclude` select, one a line, then their count."""
    from conformance.options import CheckOptions, UsageError
    from conformance.registry import all_cases
    from conformance.runner import selected

    everything = all_cases()
    try:
        cases = selected(
            everything, CheckOptions(url="", include=_split(args.cases), exclude=_split(args.exclude))
        )
    except UsageError as problem:
        return _usage(str(problem))
    for case in cases:
        gates = [*case.capabilities, *(["fixtures"] if case.fixtures else []), *case.needs]
        print(f"{case.id:48} {' '.join(case.requirements)}{'  [' + ', '.join(gates) + ']' if gates else ''}")
    print(f"{len(cases)} cases" + (f" of {len(everything)}" if len(cases) != len(everything) else ""))
    return 0


def register(commands: Any) -> None:
    from conformance.report import outputs

    check = commands.add_parser(
        "check",
        help="judge an ASP server at a ws:// URL",
        description="Run the ASP conformance cases against URL. Exit 0: no applicable case failed "
        "(warnings allowed unless --strict or --fail-on; untestable cases do not fail the run, the "
        "compliance lines say 'not proven'); 1: a failure, a stale baseline entry, or the "
        "server unreachable; 2: a usage error (bad URL, unknown selector, credentials the server refused) "
        "or the kit's own error.",
    )
    check.add_argument("url", nargs="?", help="ws:// or wss:// URL of the endpoint")
    check.add_argument(
        "--token",
        action="append",
        help="a bearer token (repeat for more users; prefer ASP_CHECK_TOKEN: flags show in process lists)",
    )
    check.add_argument("--token-file", help="file with one token per line (one per user)")
    check.add_argument(
        "--jwt-secret",
        default=os.environ.get(JWT_SECRET_VARIABLE) or None,
        help=f"mint HS256 tokens (sub, exp) for servers you control (prefer {JWT_SECRET_VARIABLE}: "
        "flags show in process lists)",
    )
    check.add_argument(
        "--jwt-algorithms",
        metavar="LIST",
        help="JWS algorithms the server is configured for, comma-separated (HS256): a token signed "
        "under another HMAC algorithm must be refused (ASP-AUTH-012); unknown when not given",
    )
    check.add_argument("--header", action="append", type=_header, help="extra handshake header NAME:VALUE")
    check.add_argument("--timeout-multiplier", type=float, default=1.0, help="scale every case timeout")
    check.add_argument(
        "--max-wait", type=float, default=20.0, help="longest real-time wait, seconds (idle timeout)"
    )
    check.add_argument("--max-connections", type=int, help="the server's limit when it does not announce one")
    check.add_argument("--cases", action="append", help="only these case ids, requirement ids or sections")
    check.add_argument("--exclude", action="append", help="skip these case ids, requirement ids or sections")
    check.add_argument("--strict", action="store_true", help="missed SHOULDs fail the run")
    check.add_argument("--expected-failures", help="baseline file of expected failures")
    check.add_argument("--fuzz-examples", type=int, default=40, help="generated inputs per fuzz case")
    outputs.add_arguments(check)
    check.add_argument("--quiet", action="store_true", help="no per-case progress lines")
    check.add_argument(
        "--list",
        action="store_true",
        help="list the cases --cases / --exclude select, with their count, and exit",
    )
    check.set_defaults(
        handler=lambda args: (
            _list_cases(args) if args.list else (_check(args) if args.url else _missing_url())
        )
    )


def _missing_url() -> int:
    return _usage("asp check needs a URL (or --list)")
