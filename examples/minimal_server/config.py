"""Configuration from `ASP_` environment variables, the same names the reference server reads.

Every limit here is announced in the `session` event (ASP-SES-002) and enforced by the module
named beside it. Values outside what `session.json` allows are refused at start-up with one line
(`ConfigError`), so the server never announces a limit the schema rejects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class ConfigError(Exception):
    """An `ASP_` variable is missing or out of range; the message names it and says why."""


@dataclass(frozen=True)
class Config:
    """Everything the server is told at start-up. Times are in milliseconds, sizes in bytes."""

    jwt_secret: str  # HS256 secret for bearer tokens (auth.py)
    host: str = "127.0.0.1"
    port: int = 8000  # 0: a free port, printed on the first line
    path: str = "/ws/chat"
    database: str = "asp-minimal.db"  # SQLite file (store.py)
    max_connections: int = 100  # authenticated sessions at once (admission.py)
    heartbeat_interval_ms: int = 15_000  # WebSocket Ping period and Pong deadline (connection.py)
    idle_timeout_ms: int = 60_000  # close 4003 (connection.py)
    rate_limit_messages: int = 20  # runs per user per window (ratelimit.py)
    rate_limit_window_ms: int = 60_000
    max_message_bytes: int = 65_536  # larger client messages close 1009 (websockets' max_size)
    max_event_bytes: int = 1_048_576  # no server event is larger (sizing.py)
    replay_window: int = 1_000  # events kept per session for resume (sessions.py)
    session_ttl_ms: int = 60_000  # how long a session outlives its connection
    send_timeout_ms: int = 10_000  # a send stalled this long is a slow consumer, 4004
    max_pending_events: int = 10_000  # events queued for one connection beyond a replay
    shutdown_grace_ms: int = 5_000  # how long runs may go on after SIGTERM
    token_delay_ms: int = 15  # pace of the scripted model (model.py)
    fixtures: bool = False  # declare the `fixtures` capability (never in production, ASP-CAP-003)
    minimal_session: bool = False  # announce only the required limits and members (events.py)
    vendor_extensions: bool = False  # add `x-` members and `x-` events (ASP-EXT-001)


# (attribute, smallest legal value): the minimums of session.json's limits and of common sense.
_INTEGERS = {
    "port": 0,
    "max_connections": 1,
    "heartbeat_interval_ms": 100,
    "idle_timeout_ms": 100,
    "rate_limit_messages": 1,
    "rate_limit_window_ms": 1,
    "max_message_bytes": 1024,
    "max_event_bytes": 65_536,
    "replay_window": 0,
    "session_ttl_ms": 0,
    "send_timeout_ms": 1,
    "max_pending_events": 1,
    "shutdown_grace_ms": 0,
    "token_delay_ms": 0,
}
_STRINGS = ("host", "path", "database")
_BOOLEANS = ("fixtures", "minimal_session", "vendor_extensions")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def load(environ: Mapping[str, str] | None = None) -> Config:
    """Read `ASP_<NAME>` for every field of `Config` (upper case); unset variables keep defaults.

    Raises:
        ConfigError: ASP_JWT_SECRET is unset, or a value is not a number/boolean or is out of range.
    """
    env = os.environ if environ is None else environ
    secret = env.get("ASP_JWT_SECRET", "")
    if not secret:
        raise ConfigError("ASP_JWT_SECRET is required (the HS256 secret of the bearer tokens)")
    values: dict[str, object] = {"jwt_secret": secret}
    for name, minimum in _INTEGERS.items():
        raw = env.get(f"ASP_{name.upper()}")
        if raw is None:
            continue
        try:
            number = int(raw)
        except ValueError:
            raise ConfigError(f"ASP_{name.upper()} must be an integer, got {raw!r}") from None
        if number < minimum:
            raise ConfigError(f"ASP_{name.upper()} must be at least {minimum}, got {number}")
        values[name] = number
    for name in _STRINGS:
        if f"ASP_{name.upper()}" in env:
            values[name] = env[f"ASP_{name.upper()}"]
    for name in _BOOLEANS:
        raw = env.get(f"ASP_{name.upper()}")
        if raw is None:
            continue
        if raw.lower() not in _TRUE + _FALSE:
            raise ConfigError(f"ASP_{name.upper()} must be true or false, got {raw!r}")
        values[name] = raw.lower() in _TRUE
    config = Config(**values)  # type: ignore[arg-type]
    if not config.path.startswith("/"):
        raise ConfigError(f"ASP_PATH must start with '/', got {config.path!r}")
    return config
