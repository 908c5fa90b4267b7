"""`asp serve` and `asp token`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

# `asp serve`'s own defaults, where they differ from the settings model's.
SERVE_DEFAULTS: dict[str, Any] = {"fixtures": True}


def _serve(args: argparse.Namespace) -> int:
    try:
        from reference_server.config import Settings
        from reference_server.launch import run
        from reference_server.settings_cli import overrides
    except KeyboardInterrupt:  # Ctrl-C while importing, before run() handles signals
        return 0

    def start(settings: Settings) -> None:
        from reference_server.server import DevMode, serve  # the heavy imports, with signals handled

        serve(settings, dev=DevMode() if args.dev else None, workers=args.workers)

    given = overrides(args, SERVE_DEFAULTS)
    return run(lambda: Settings(**given), start)


def _token(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from reference_server.auth import mint
    from reference_server.config import Settings
    from reference_server.launch import setting_problems

    try:
        settings = Settings()
    except ValidationError as invalid:
        # Only ASP_JWT_SECRET matters here: the server's other settings (its database, say) stay its own.
        unused = {str(problem["loc"][0]) for problem in invalid.errors() if problem["loc"]} - {"jwt_secret"}
        try:
            settings = Settings(**{name: Settings.model_fields[name].default for name in unused})
        except ValidationError as still:
            for line in setting_problems(still, flags=False):  # asp token reads the variables only
                print(f"asp token: error: {line}", file=sys.stderr)
            return 2
    if settings.generated_secret:
        print(
            "asp token: error: set ASP_JWT_SECRET to the server's secret to mint a token for it",
            file=sys.stderr,
        )
        return 2
    print(mint(args.user, settings.secret, ttl_seconds=args.ttl))
    return 0


def _subject(text: str) -> str:
    """`--user`: the token's `sub`, the user the server will know; never empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a user, got an empty name")
    return text


def _lifetime(text: str) -> int:
    """`--ttl`: whole seconds above 0 (a token of 0 or fewer would be expired when minted)."""
    try:
        seconds = int(text)
    except ValueError:
        seconds = 0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of seconds above 0, got {text!r}")
    return seconds


def _workers(text: str) -> int:
    """`--workers`: a whole number of processes, at least 1 (0 or fewer would serve nothing)."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of processes, at least 1, got {text!r}")
    return count


class _SettingsFlags(argparse.ArgumentParser):
    """Mixed into the `asp serve` parser: adds the settings flags on first use."""

    _flags_added = False

    def _add_settings_flags(self) -> None:
        if not self._flags_added:
            from reference_server.settings_cli import add_flags

            self._flags_added = True
            add_flags(self, SERVE_DEFAULTS)

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        self._add_settings_flags()
        return super().parse_known_args(*args, **kwargs)

    def format_help(self) -> str:
        self._add_settings_flags()
        return super().format_help()

    def format_usage(self) -> str:
        self._add_settings_flags()
        return super().format_usage()


def register(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the reference server",
        description="Run the ASP reference server on embedded defaults. Settings come from ASP_ "
        "environment variables; these flags override them. Test fixtures are on unless --no-fixtures "
        "(or ASP_FIXTURES=false). "
        "No token is printed and nobody can sign in over HTTP unless --dev; without --dev, "
        "ASP_JWT_SECRET is required.",
    )
    # One flag per setting, generated from the settings model when `asp serve` is parsed or its help
    # shown: the other `asp` commands never import pydantic-settings for it.
    serve.__class__ = type("ServeParser", (_SettingsFlags, type(serve)), {})
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="worker processes on one port, acting as one server (needs ASP_REDIS_URL; default 1)",
    )
    serve.add_argument(
        "--dev",
        action="store_true",
        help="development mode: print a short-lived token and let the demo page sign in as any user "
        "(POST /dev/token); loopback addresses only, never in production",
    )
    serve.set_defaults(handler=_serve)

    token = commands.add_parser("token", help="mint a token for ASP_JWT_SECRET")
    token.add_argument("--user", required=True, type=_subject, help="the user (the token's sub)")
    token.add_argument(
        "--ttl", type=_lifetime, default=3600, help="lifetime in seconds, above 0 (default 3600)"
    )
    token.set_defaults(handler=_token)
