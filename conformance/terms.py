"""What the server announced in its `session` event, and the waits the kit derives from it.

Every wait and every scenario of a check is sized from these terms and the check's options
(`--max-wait`, `--timeout-multiplier`), never from fixed numbers that fit one server only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spec import PROTOCOL_VERSION
from spec.catalog import parse_version

Event = dict[str, Any]

# Assumed when the server announces nothing (a session without limits breaks ASP-SES-002, which the
# oracle reports; the kit still needs a number to pace itself by).
DEFAULT_HEARTBEAT_S = 15.0


@dataclass(frozen=True)
class RateLimit:
    """`rate_limit` as announced: `messages` per `window_s` seconds, per user (ASP-LIM-004)."""

    messages: int
    window_s: float


@dataclass(frozen=True)
class ServerTerms:
    """The server's announcement, typed; `carriage` is the token carriage the probe found working."""

    session: Event
    limits: dict[str, Any]
    capabilities: frozenset[str]
    user_id: str
    carriage: str = "query"  # "query" or "subprotocol"

    @classmethod
    def from_session(cls, session: Event, carriage: str = "query") -> ServerTerms:
        limits = session.get("limits")
        capabilities = session.get("capabilities")
        user = session.get("user")
        return cls(
            session,
            dict(limits) if isinstance(limits, dict) else {},
            frozenset(c for c in capabilities if isinstance(c, str))
            if isinstance(capabilities, list)
            else frozenset(),
            str(user.get("id", "")) if isinstance(user, dict) else "",
            carriage,
        )

    # --- announced values ------------------------------------------------------------------------

    @property
    def protocol_version(self) -> str:
        """`session.protocol_version` as MAJOR.MINOR; the kit's own version when it is unusable
        (the oracle reports that: ASP-VER-004, ASP-ENV-001), so every requirement then applies."""
        value = self.session.get("protocol_version")
        try:
            parse_version(str(value))
        except ValueError:
            return PROTOCOL_VERSION
        return str(value)

    def _positive(self, name: str) -> float | None:
        value = self.limits.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            return None
        return float(value)

    @property
    def idle_timeout_s(self) -> float | None:
        ms = self._positive("idle_timeout_ms")
        return ms / 1000 if ms is not None else None

    @property
    def heartbeat_interval_s(self) -> float | None:
        ms = self._positive("heartbeat_interval_ms")
        return ms / 1000 if ms is not None else None

    @property
    def session_ttl_s(self) -> float | None:
        """`session_ttl_ms` in seconds; 0 is legal (a session is not resumable once its connection
        ends, ASP-RES-003). None when not announced (it is optional) or not a number."""
        value = self.limits.get("session_ttl_ms")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            return None
        return float(value) / 1000

    @property
    def replay_window(self) -> int | None:
        value = self.limits.get("replay_window")
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

    @property
    def max_message_bytes(self) -> int | None:
        value = self._positive("max_message_bytes")
        return int(value) if value is not None else None

    @property
    def max_connections(self) -> int | None:
        value = self._positive("max_connections")
        return int(value) if value is not None else None

    @property
    def rate_limit(self) -> RateLimit | None:
        rate = self.limits.get("rate_limit")
        if not isinstance(rate, dict):
            return None
        messages, window = rate.get("messages"), rate.get("window_ms")
        if not isinstance(messages, int) or not isinstance(window, int) or messages <= 0 or window <= 0:
            return None
        return RateLimit(messages, window / 1000)

    # --- waits derived from them -----------------------------------------------------------------

    @property
    def keepalive_s(self) -> float:
        """How often the kit pings a connection it holds (ASP-HB-004): the heartbeat interval, and
        often enough that no legal idle timeout closes it (a third of it)."""
        heartbeat = self.heartbeat_interval_s or DEFAULT_HEARTBEAT_S
        idle = self.idle_timeout_s
        return max(0.05, min(heartbeat, idle / 3) if idle is not None else heartbeat)
