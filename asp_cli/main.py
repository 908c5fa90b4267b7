"""The `asp` command. Subcommands import their package lazily, so `asp spec validate` stays fast."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, cast

Handler = Callable[[argparse.Namespace], int]


def _spec_validate(args: argparse.Namespace) -> int:
    from spec.transcript import run

    return run(args.file)


def _spec_site(args: argparse.Namespace) -> int:
    from spec.site.build import run

    return run(args.out)


class UsageParser(argparse.ArgumentParser):
    """Usage errors in one line (`asp load: error: ...`), exit 2; `--help` shows the usage.

    Subcommand parsers are of the same class (argparse makes them of the parent's class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = UsageParser(prog="asp", description="Agent Stream Protocol tools.")
    commands = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True),
    )

    spec = commands.add_parser("spec", help="work with the protocol spec")
    spec_commands = spec.add_subparsers(dest="spec_command", required=True)
    validate = spec_commands.add_parser(
        "validate",
        help="validate one JSON message or a JSONL transcript of server events",
        description="Exit 0 clean, 1 violations (each printed with its requirement ID), 2 unusable input.",
    )
    validate.add_argument("file", help="a file, or - for standard input")
    validate.set_defaults(handler=_spec_validate)
    site = spec_commands.add_parser(
        "site",
        help="build the spec as a static HTML site and check it",
        description=(
            "Write the spec (prose, messages with examples, sequence diagrams, requirements catalog, "
            "registries, AsyncAPI reference) as HTML into OUT, replacing an earlier build there. "
            "Exit 0 built and checked, 1 the checks found problems (each printed), 2 OUT unusable."
        ),
    )
    site.add_argument("out", metavar="OUT", help="output directory: new, empty, or an earlier build")
    site.set_defaults(handler=_spec_site)

    for register in _extensions():
        register(commands)
    return parser


def _extensions() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """Subcommands contributed by the other packages (each registers its own parser)."""
    from asp_cli import commands

    return list(commands.REGISTRARS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
