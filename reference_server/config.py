"""Server settings: `ASP_` environment variables, overridable by `asp serve` flags.

Development mode (printed tokens, POST /dev/token) is deliberately not a setting: no variable can
turn it on. Only `asp serve --dev` does (reference_server.server.DevMode).
"""

from __future__ import annotations

import importlib.util
import secrets
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_BYTES = 32  # HS256: a key at least as long as the hash output (RFC 7518 section 3.2)
# ASP_TRACING's spellings, normalised to "" (off), "true" or "console" (reference_server.tracing).
TRACING_OFF = frozenset({"", "false", "0", "off", "no"})
TRACING_ON = frozenset({"true", "1", "on", "yes"})
# The one home of the settings' variable names: each field `name` is read from ENV_PREFIX + NAME.
ENV_PREFIX = "ASP_"


def env_name(field: str) -> str:
    """The environment variable of the setting `field`: `jwt_secret` is `ASP_JWT_SECRET`."""
    return ENV_PREFIX + field.upper()


def env_sets(field: str, environ: Mapping[str, str]) -> bool:
    """Whether `environ` sets the setting `field`: its variable in any case, as pydantic-settings
    reads it (case-insensitively: `asp_fixtures` sets `fixtures` as `ASP_FIXTURES` does)."""
    wanted = env_name(field).lower()
    return any(key.lower() == wanted for key in environ)


def without_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` without any variable of the settings' namespace: every name that starts with
    ENV_PREFIX, in any case (pydantic-settings matches names case-insensitively: `asp_model` sets
    `model` too). For a server that must run on the settings it is given, not on a shell's stray
    `ASP_REDIS_URL`."""
    return {key: value for key, value in environ.items() if not key.upper().startswith(ENV_PREFIX)}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address to bind; `--dev` needs a loopback one.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port; 0 picks a free one (printed).")
    path: str = Field(default="/ws/chat", description="Path of the ASP WebSocket endpoint.")
    jwt_secret: SecretStr | None = Field(
        default=None,
        description="HS256 secret for tokens, at least 32 bytes. Prefer the variable to the flag "
        "(flags show in process lists).",
        json_schema_extra={"shown_default": "required (`asp serve --dev`: generated per start)"},
    )
    database_url: str = Field(
        default="sqlite+aiosqlite:///asp.db",
        description="Any SQLAlchemy async URL (PostgreSQL by URL: `postgresql+asyncpg://...`).",
    )
    max_connections: int = Field(
        default=100,
        ge=1,
        description="Connection limit; beyond it 1013 (a user's new connection takes the slot of the one "
        "it supersedes).",
    )
    model: str = Field(
        default="offline",
        description="`offline`, or a pydantic-ai model string such as `openai:gpt-4o` (its key from the "
        "provider's own variable; `pip install 'agent-stream-protocol[providers]'`).",
    )
    redis_url: str = Field(
        default="",
        description="Redis for the state several processes share (connection limit, sessions, rate "
        "limit); unset keeps it in this process.",
    )
    redis_prefix: str = Field(default="asp", description="Prefix of every Redis key and channel.")
    lease_ttl_ms: int = Field(
        default=10_000, ge=1_000, description="A dead process's connection slots are free after this."
    )
    token_delay_ms: int = Field(default=15, ge=0, description="Pace of the offline model, per token.")
    heartbeat_interval_ms: int = Field(
        default=15_000,
        ge=100,
        description="WebSocket pings at this interval, announced in `session`; no pong within it "
        "closes 4005.",
    )
    idle_timeout_ms: int = Field(
        default=60_000,
        ge=100,
        description="No data frame for this long (counted from the end of the last run too) closes 4003.",
    )
    rate_limit_messages: int = Field(
        default=20, ge=1, description="Runs one user may start per window; refused messages do not count."
    )
    rate_limit_window_ms: int = Field(default=60_000, ge=1, description="The rate limit's sliding window.")
    max_message_bytes: int = Field(
        default=65_536, ge=1024, description="Larger client messages (fragments reassembled) close 1009."
    )
    replay_window: int = Field(
        default=1_000,
        ge=0,
        description="Events a session keeps for a resume; announced lowered to what max_replay_bytes holds "
        "of events of max_event_bytes.",
    )
    max_replay_bytes: int = Field(
        # 64 events of the largest size: about a second of a fast stream to reconnect in, and a
        # detached session holds at most 64 MiB for its TTL (worst case, events of max_event_bytes).
        default=64 * 1024 * 1024,
        ge=0,
        description="Bytes of events a session keeps for a resume at most: the announced replay_window is "
        "at most this over max_event_bytes (64 with the defaults).",
    )
    session_ttl_ms: int = Field(
        default=60_000, ge=0, description="How long a session outlives its connection, resumable."
    )
    send_timeout_ms: int = Field(
        default=10_000, ge=100, description="A client not reading for this long is closed 4004."
    )
    max_pending_events: int = Field(
        default=10_000, ge=10, description="Events queued for one connection; beyond, it is closed 4004."
    )
    max_pending_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=65_536,
        description="Bytes of events queued for one connection; beyond, it is closed 4004.",
    )
    max_event_bytes: int = Field(
        default=1_048_576,
        ge=65_536,
        description="Largest server event, announced (ASP-LIM-011); deltas are split, history keeps the "
        "newest entries that fit.",
    )
    handshake_timeout_ms: int = Field(
        default=5_000, ge=100, description="A request head must arrive within this, else 408."
    )
    max_pending_handshakes: int | None = Field(
        default=None,
        ge=1,
        description="Connections still sending their request head; beyond, the oldest is closed.",
        json_schema_extra={"shown_default": "half the file descriptors left after max_connections"},
    )
    history_cache_size: int = Field(
        default=10_000,
        ge=0,
        description="Conversations kept in a write-through cache, and users whose last bound conversation "
        "is kept; with ASP_REDIS_URL each use of a cached conversation is checked against a version in "
        "Redis (a conversation is read again at least every 30 s; Redis unreachable: read from the "
        "database), and bindings are not cached.",
    )
    history_cache_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description="Bytes of stored history the cache holds at most; a larger conversation is read from "
        "the database.",
    )
    coalesce_ms: float = Field(
        default=2.0,
        ge=0,
        description="Deltas arriving faster than a quarter of this wait at most this long and leave as one "
        "event; the first delta of a run and paced streams never wait. At most a tenth of the idle timeout.",
    )
    max_coalesced_chars: int = Field(default=16_384, ge=1, description="Largest delta made by coalescing.")
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        default="auto",
        description="The event loop the server runs on: `auto` (uvloop's when uvloop is installed, else "
        "asyncio's), `asyncio` or `uvloop`.",
    )
    shutdown_grace_ms: int = Field(
        default=5_000,
        ge=0,
        description="On SIGTERM runs get this long to finish (then `error shutting_down`), then "
        "connections close 1012.",
    )
    fixtures: bool = Field(
        default=False,
        description="Declare and honour the test fixtures (`spec/registry.yaml`); never in production.",
        json_schema_extra={"shown_default": "false (`asp serve`: true)"},
    )
    reasoning: bool = Field(default=False, description="Stream the model's reasoning as reasoning_delta.")
    access_log: bool = Field(
        default=True,
        description="uvicorn's access log: a line per HTTP request and per WebSocket handshake and close "
        "(tokens redacted); off, the server's own session lines stay.",
    )
    log_json: bool = Field(default=False, description="Log lines as JSON objects.")
    tracing: str = Field(
        default="",
        description="OpenTelemetry spans: `true` (the deployment's tracer provider) or `console`; "
        "extra `tracing`.",
        json_schema_extra={"shown_default": "off"},
    )

    generated_secret: bool = Field(default=False, exclude=True)

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, secret: SecretStr | None) -> SecretStr | None:
        """HS256 keys of at least 32 bytes (RFC 7518 section 3.2), checked once here rather than
        warned about by PyJWT on every token. Empty means unset (a secret is generated)."""
        length = len(secret.get_secret_value().encode()) if secret is not None else 0
        if 0 < length < MIN_SECRET_BYTES:
            raise ValueError(
                f"is {length} byte{'s' if length != 1 else ''}; HS256 needs at least {MIN_SECRET_BYTES} "
                "(RFC 7518 section 3.2). "
                "Make one with: python -c 'import secrets; print(secrets.token_hex(32))'"
            )
        return secret

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, path: str) -> str:
        """A path as request lines carry it: `ws/chat` matched no request and was announced as
        ws://HOST:PORTws/chat."""
        if not path.startswith("/"):
            raise ValueError(f"must start with /, such as /ws/chat, got {path!r}")
        return path

    @field_validator("coalesce_ms")
    @classmethod
    def _coalesce_within_idle(cls, coalesce_ms: float, info: ValidationInfo) -> float:
        """A run's last events wait at most coalesce_ms after its end, from which the idle timeout
        counts (ASP-HB-002): at most a tenth of it, as a client measuring the timeout from the last
        event it got may allow. A window longer than the idle timeout closed connections 4003 before
        their run's last deltas and `complete` arrived (15 s of coalescing, a 2 s idle timeout)."""
        idle_ms = info.data.get("idle_timeout_ms")
        if idle_ms is not None and coalesce_ms * 10 > idle_ms:
            raise ValueError(
                f"is {coalesce_ms:g}, more than a tenth of idle_timeout_ms ({idle_ms}): a run's last "
                "events would wait that long after its end, from which the idle timeout counts"
            )
        return coalesce_ms

    @field_validator("event_loop")
    @classmethod
    def _loop_installed(cls, loop: str) -> str:
        """uvloop asked for by name must be there: uvicorn would fail on its import after start-up
        began (`auto` takes asyncio's loop without it)."""
        if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
            raise ValueError("uvloop is not installed: pip install uvloop, or choose auto or asyncio")
        return loop

    @field_validator("tracing")
    @classmethod
    def _known_tracing(cls, mode: str) -> str:
        """Off, `true` or `console`, checked here: any other word turned tracing on (`False`
        included), and `console` without the `tracing` extra failed after 'listening'."""
        normalised = mode.strip().lower()
        if normalised in TRACING_OFF:
            return ""
        if normalised in TRACING_ON:
            return "true"
        if normalised != "console":
            raise ValueError(f"takes true or console (false, or unset, leaves it off), got {mode!r}")
        try:
            sdk = importlib.util.find_spec("opentelemetry.sdk")
        except ModuleNotFoundError:
            sdk = None
        if sdk is None:
            raise ValueError(
                "console needs the OpenTelemetry SDK, which is not installed: "
                "pip install 'agent-stream-protocol[tracing]'"
            )
        return normalised

    @field_validator("database_url")
    @classmethod
    def _usable_database(cls, url: str) -> str:
        """An async SQLAlchemy URL whose driver is installed, checked once here rather than failing in
        a traceback at start (reference_server.stores.url_problem)."""
        from reference_server.stores import url_problem

        problem = url_problem(url)
        if problem is not None:
            raise ValueError(problem)
        return url

    @field_validator("redis_url")
    @classmethod
    def _usable_redis(cls, url: str) -> str:
        """Unset, or a Redis URL (reference_server.stores.redis_url_problem)."""
        from reference_server.stores import redis_url_problem

        problem = redis_url_problem(url) if url else None
        if problem is not None:
            raise ValueError(problem)
        return url

    @model_validator(mode="after")
    def _ensure_secret(self) -> Settings:
        """No secret: one generated for this process (`generated_secret`), which only development
        mode prints; reference_server.server.serve refuses to start on it otherwise."""
        if self.jwt_secret is None or not self.jwt_secret.get_secret_value():
            self.jwt_secret = SecretStr(secrets.token_hex(32))  # never begins with "-" (a flag)
            self.generated_secret = True
        return self

    @property
    def secret(self) -> str:
        assert self.jwt_secret is not None
        return self.jwt_secret.get_secret_value()
