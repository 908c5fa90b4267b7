"""`asp serve` and `asp token`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

FLAGS: list[tuple[str, type, str]] = [
    ("jwt-secret", str, "HS256 secret (prefer ASP_JWT_SECRET: flags show in process lists)"),
    ("host", str, "address to bind (default 127.0.0.1)"),
    ("port", int, "port (default 8000; 0 picks a free one)"),
    ("database-url", str, "SQLAlchemy async URL (default sqlite+aiosqlite:///asp.db)"),
    ("max-connections", int, "connection limit (default 100)"),
    ("model", str, "'offline' or a pydantic-ai model string such as openai:gpt-4o"),
    ("token-delay-ms", int, "pace of the offline model per token"),
    ("heartbeat-interval-ms", int, "WebSocket ping interval, announced in session; no pong within it: 4005"),
    ("idle-timeout-ms", int, "close idle connections after this long (4003)"),
    ("rate-limit-messages", int, "runs per window per user"),
    ("rate-limit-window-ms", int, "rate limit window (sliding)"),
    ("max-message-bytes", int, "largest client message; larger closes with 1009"),
    ("max-event-bytes", int, "largest server event, announced (default 1 MiB)"),
    ("replay-window", int, "events kept per session for resume"),
    ("session-ttl-ms", int, "how long a detached session stays resumable"),
]


def _serve(args: argparse.Namespace) -> int:
    from reference_server.config import Settings
    from reference_server.launch import run
    from reference_server.server import DevMode, serve

    overrides: dict[str, Any] = {
        name.replace("-", "_"): getattr(args, name.replace("-", "_"))
        for name, _, _ in FLAGS
        if getattr(args, name.replace("-", "_")) is not None
    }
    overrides["fixtures"] = not args.no_fixtures
    dev = DevMode() if args.dev else None
    return run(lambda: Settings(**overrides), lambda settings: serve(settings, dev=dev))


def _token(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from reference_server.auth import mint
    from reference_server.config import Settings
    from reference_server.launch import setting_problems

    try:
        settings = Settings()
    except ValidationError as invalid:
        for line in setting_problems(invalid):
            print(f"error: {line}", file=sys.stderr)
        return 2
    if settings.generated_secret:
        print("error: set ASP_JWT_SECRET to the server's secret to mint a token for it", file=sys.stderr)
        return 2
    print(mint(args.user, settings.secret, ttl_seconds=args.ttl))
    return 0


def register(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the reference server",
        description="Run the ASP reference server on embedded defaults. Settings come from ASP_ "
        "environment variables; these flags override them. Test fixtures are on unless --no-fixtures. "
        "No token is printed and nobody can sign in over HTTP unless --dev.",
    )
    for name, kind, text in FLAGS:
        serve.add_argument(f"--{name}", type=kind, help=text)
    serve.add_argument("--no-fixtures", action="store_true", help="do not declare the test fixtures")
    serve.add_argument(
        "--dev",
        action="store_true",
        help="development mode: print a short-lived token and let the demo page sign in as any user "
        "(POST /dev/token); loopback addresses only, never in production",
    )
    serve.set_defaults(handler=_serve)

    token = commands.add_parser("token", help="mint a token for ASP_JWT_SECRET")
    token.add_argument("--user", required=True)
    token.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    token.set_defaults(handler=_token)
