"""The per-user run rate limit's storage: a sliding log of run starts per user (ASP-LIM-009).

The arithmetic is the decision core's (`reference_server.protocol.ratelimit.decide`); this module
keeps each user's recent run starts. `acquire` is one atomic step: it decides and, only when the
run may start, records it, so refused messages never count. A limiter shared by several
processes implements the same interface (for example a Redis sorted set per user trimmed and read
in one script).

The `limits` library's moving window was the first candidate; it does not fit: its windows are
whole seconds (a 400 ms window became 1 s, the defect this replaces) and a run exactly one window
old still counts, so a message sent right after retry_after_ms would be refused.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from reference_server.protocol.ratelimit import RateDecision, decide


class RunRateLimiter(Protocol):
    async def acquire(self, user_id: str, now: float) -> RateDecision:
        """May the user start a run at `now` (seconds)? Records the start when allowed."""
        ...

    def sweep(self, now: float) -> None:
        """Forget users whose every counted run has left the window."""
        ...


class InMemoryRunRateLimiter(RunRateLimiter):
    """`messages` run starts per `window_ms`, per user, in this process's memory."""

    def __init__(self, messages: int, window_ms: int) -> None:
        self.messages = messages
        self.window_s = window_ms / 1000
        self._starts: dict[str, deque[float]] = {}

    async def acquire(self, user_id: str, now: float) -> RateDecision:
        starts = self._starts.setdefault(user_id, deque(maxlen=self.messages))
        decision = decide(starts, now, self.messages, self.window_s)
        if decision.allowed:
            starts.append(now)
        return decision

    def sweep(self, now: float) -> None:
        for user_id in [
            u for u, starts in self._starts.items() if not starts or starts[-1] <= now - self.window_s
        ]:
            del self._starts[user_id]
