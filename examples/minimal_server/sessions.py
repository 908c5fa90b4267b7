"""Sessions: numbering, the replay buffer, and outliving the connection (PROTOCOL.md sections 5 and 15).

A session is the server-side state of one authenticated connection: its event numbering, its
conversation and its run. Every event of a session goes through `Session.emit`, which gives it
the next `seq` (ASP-ENV-002), keeps the last `replay_window` events for resume (ASP-RES-003) and
hands the encoded frame to the connection carrying the session, if any. A session outlives its
connection by `session_ttl_ms` (`SessionTable.find`).
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from examples.minimal_server import sizing

if TYPE_CHECKING:
    from examples.minimal_server.runs import Run

Event = dict[str, Any]


class Outlet(Protocol):
    """Where a session's frames go: the connection carrying it."""

    def deliver(self, frame: str) -> None: ...


class Session:
    def __init__(self, user: str, conversation_id: str, replay_window: int, vendor: bool) -> None:
        self.id = "ses_" + secrets.token_hex(16)  # 128 random bits (ASP-SEC-002)
        self.user = user
        self.conversation_id = conversation_id
        self.seq = 0  # seq of the last event emitted
        self.replay: deque[tuple[int, str]] = deque(maxlen=replay_window)
        self.outlet: Outlet | None = None
        self.run: Run | None = None  # the active run (at most one, ASP-RUN-002)
        self.runs_started = 0
        self.ended_at: float | None = None  # monotonic time the last connection left
        self.last_run_end = 0.0  # monotonic time the last run completed (idle timer, ASP-HB-006)
        self._vendor = vendor
        self._opened = time.monotonic()

    def emit(self, event: Event) -> int:
        """Number `event`, keep it for replay, deliver it if a connection carries the session.

        Returns its seq. The event must already fit `max_event_bytes` less `sizing.RESERVE`.
        """
        self.seq += 1
        numbered = {"type": event["type"], "seq": self.seq, **event}
        if self._vendor:
            numbered["x-minimal.ms"] = round((time.monotonic() - self._opened) * 1000)
        frame = sizing.encode(numbered)
        self.replay.append((self.seq, frame))
        if self.outlet is not None:
            self.outlet.deliver(frame)
        return self.seq

    def kept_after(self, last_seq: int) -> list[str] | None:
        """The frames after `last_seq`, or None when some of them are no longer kept."""
        missing = self.seq - last_seq
        if missing < 0 or missing > len(self.replay):
            return None
        return [frame for seq, frame in self.replay if seq > last_seq]

    def attach(self, outlet: Outlet) -> None:
        """`outlet` carries the session from now on: its next events go there."""
        self.outlet = outlet
        self.ended_at = None

    def detach(self, outlet: Outlet) -> None:
        """`outlet` no longer carries the session; it stays resumable for the TTL from now."""
        if self.outlet is outlet:
            self.outlet = None
            self.ended_at = time.monotonic()


class SessionTable:
    """Every session that is carried, or resumable within `ttl_ms` (ASP-RES-003)."""

    def __init__(self, ttl_ms: int) -> None:
        self.ttl_s = ttl_ms / 1000
        self._sessions: dict[str, Session] = {}

    def add(self, session: Session) -> None:
        self._sweep()
        self._sessions[session.id] = session

    def discard(self, session: Session) -> None:
        self._sessions.pop(session.id, None)

    def find(self, session_id: str, user: str) -> Session | None:
        """The session named `session_id` if it belongs to `user` and has not expired (ASP-RES-002)."""
        self._sweep()
        session = self._sessions.get(session_id)
        return session if session is not None and session.user == user else None

    def _sweep(self) -> None:
        now = time.monotonic()
        expired = [
            s.id for s in self._sessions.values() if s.ended_at is not None and now - s.ended_at > self.ttl_s
        ]
        for session_id in expired:
            del self._sessions[session_id]
