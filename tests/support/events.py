"""Events the kit's tests feed it: built once here, so every test starts from the same valid ones."""

from __future__ import annotations

from typing import Any


def session_event(
    version: str = "1.0", session_id: str = "ses_1", conversation_id: str = "conv_1", **limits: int
) -> dict[str, Any]:
    """A `session` event that passes the schema with the spec's default limits (required members
    only), `limits` added or overriding them."""
    return {
        "type": "session",
        "seq": 1,
        "protocol_version": version,
        "session_id": session_id,
        "conversation_id": conversation_id,
        "user": {"id": "alice"},
        "limits": {
            "max_message_bytes": 65536,
            "heartbeat_interval_ms": 15000,
            "idle_timeout_ms": 60000,
            "rate_limit": {"messages": 20, "window_ms": 60000},
            "replay_window": 1000,
            **limits,
        },
        "capabilities": ["history", "cancel", "resume"],
    }
