"""Server settings: `ASP_` environment variables, overridable by `asp serve` flags.

Development mode (printed tokens, POST /dev/token) is deliberately not a setting: no variable can
turn it on. Only `asp serve --dev` does (reference_server.server.DevMode).
"""

from __future__ import annotations

import secrets

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_BYTES = 32  # HS256: a key at least as long as the hash output (RFC 7518 section 3.2)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASP_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    path: str = "/ws/chat"
    jwt_secret: SecretStr | None = Field(
        default=None, description="HS256 secret for tokens; generated per start when unset."
    )
    database_url: str = "sqlite+aiosqlite:///asp.db"
    max_connections: int = Field(default=100, ge=1)
    model: str = Field(default="offline", description="'offline' or any pydantic-ai model string.")
    token_delay_ms: int = Field(default=15, ge=0, description="Pace of the offline model, per token.")
    heartbeat_interval_ms: int = Field(default=15_000, ge=100)
    idle_timeout_ms: int = Field(default=60_000, ge=100)
    rate_limit_messages: int = Field(default=20, ge=1)
    rate_limit_window_ms: int = Field(default=60_000, ge=1)
    max_message_bytes: int = Field(default=65_536, ge=1024)
    replay_window: int = Field(default=1_000, ge=0)
    session_ttl_ms: int = Field(default=60_000, ge=0)
    send_timeout_ms: int = Field(
        default=10_000, ge=100, description="A send blocked longer is a slow consumer."
    )
    max_pending_events: int = Field(default=10_000, ge=10)
    max_event_bytes: int = Field(
        default=1_048_576, ge=65_536, description="Largest server event, announced (ASP-LIM-011)."
    )
    handshake_timeout_ms: int = Field(
        default=5_000,
        ge=100,
        description="A connection that has not sent its request head by then is closed.",
    )
    max_pending_handshakes: int | None = Field(
        default=None,
        ge=1,
        description="Connections still sending their request head; beyond, the oldest is closed. "
        "Default: half the file descriptors left after max_connections.",
    )
    history_cache_size: int = Field(
        default=10_000, ge=0, description="0 when several processes share the DB."
    )
    coalesce_ms: float = Field(
        default=2.0, ge=0, description="Bounded wait to coalesce deltas of an instant model."
    )
    max_coalesced_chars: int = Field(default=16_384, ge=1)
    shutdown_grace_ms: int = Field(default=5_000, ge=0)
    fixtures: bool = Field(
        default=False, description="Declare and honour the test fixtures (never in production)."
    )
    reasoning: bool = Field(default=False, description="Stream the model's reasoning as reasoning_delta.")
    access_log: bool = True
    log_json: bool = False
    tracing: str = Field(default="", description="OpenTelemetry spans: '' off, 'true' or 'console'.")

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
                "Make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return secret

    @model_validator(mode="after")
    def _ensure_secret(self) -> Settings:
        if self.jwt_secret is None or not self.jwt_secret.get_secret_value():
            self.jwt_secret = SecretStr(secrets.token_urlsafe(32))
            self.generated_secret = True
        return self

    @property
    def secret(self) -> str:
        assert self.jwt_secret is not None
        return self.jwt_secret.get_secret_value()
