"""The `asp` command. Subcommands import their package lazily, so `asp spec validate` stays fast."""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, cast

Handler = Callable[[argparse.Namespace], int]


def _spec_validate(args: argparse.Namespace) -> int:
    from spec.transcript import run

    return run(args.file)


def _spec_site(args: argparse.Namespace) -> int:
    from spec.site.build import run

    return run(args.out)


_OWNER = "_asp_unrecognized_by"  # set on the namespace by the innermost parser that left arguments over


# argparse's message for a flag followed by something it took for another flag (or by nothing).
_EXPECTED_ONE = re.compile(r"argument (--[\w-]+(?:/-[\w-]+)*): expected one argument")


class UsageParser(argparse.ArgumentParser):
    """Usage errors in one line (`asp load: error: ...`), exit 2; `--help` shows the usage.

    Subcommand parsers are of the same class (argparse makes them of the parent's class), so each
    of these holds for every `asp` command:
    - no prefix abbreviations (`allow_abbrev=False`): `--json-fil` is an error, not `--json-file`;
    - an unknown flag is reported by the command it was given to (`asp check: error: unrecognized
      arguments: --jwt-secert x; did you mean --jwt-secret?`), with the closest flag (difflib);
    - a value outside a choice (a subcommand too) names the closest choice;
    - a flag whose value was taken for a flag (`--jwt-secret -abc`: a generated secret may begin
      with '-') says how to give such a value (`--jwt-secret=-abc`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        missing = _EXPECTED_ONE.fullmatch(message)
        if missing:
            flag = missing.group(1).split("/")[-1]
            message += f" (a value beginning with '-' goes as {flag}=VALUE)"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and not hasattr(parsed, _OWNER):  # a subcommand's parser returns first
            setattr(parsed, _OWNER, self)
        return parsed, extras

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            owner: UsageParser = getattr(parsed, _OWNER, self)
            owner.error(f"unrecognized arguments: {' '.join(extras)}{owner.suggestion(extras)}")
        return parsed

    def suggestion(self, extras: Sequence[str]) -> str:
        """`; did you mean --flag?` for the unknown flags among `extras` close to one of this parser's."""
        flags = [flag for action in self._actions for flag in action.option_strings]
        close = {
            extra: match[0]
            for extra in extras
            if extra.startswith("-") and (match := difflib.get_close_matches(extra.split("=")[0], flags, n=1))
        }
        if not close:
            return ""
        if len(close) == 1:
            return f"; did you mean {next(iter(close.values()))}?"
        return "; did you mean " + ", ".join(f"{flag} (for {extra})" for extra, flag in close.items()) + "?"

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as invalid:
            choices = [str(choice) for choice in action.choices or ()]
            match = difflib.get_close_matches(str(value), choices, n=1)
            if not match:
                raise
            raise argparse.ArgumentError(action, f"{invalid.message}; did you mean {match[0]}?") from None


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
