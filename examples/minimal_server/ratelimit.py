"""The per-user message rate limit, a sliding window (ASP-LIM-004, ASP-LIM-009).

A `message` is refused for the rate exactly when `messages` runs of that user started within
the preceding `window_ms`, counted across all the user's connections. Only messages that start
a run count: the caller asks `retry_after_ms` last, after its other checks, and calls `record`
when it starts the run.
"""

from __future__ import annotations

import math
from collections import deque


class RateLimit:
    """Run start times per user, in seconds of a monotonic clock the caller passes in."""

    def __init__(self, messages: int, window_ms: int) -> None:
        self.messages = messages
        self.window_s = window_ms / 1000
        self._starts: dict[str, deque[float]] = {}

    def retry_after_ms(self, user: str, now: float) -> int | None:
        """None when `user` may start a run at `now`; else how long until the oldest counted run
        leaves the window, in whole milliseconds (> 0, <= window_ms)."""
        starts = self._starts.get(user)
        if starts is None:
            return None
        while starts and now - starts[0] >= self.window_s:
            starts.popleft()
        if not starts:
            del self._starts[user]
            return None
        if len(starts) < self.messages:
            return None
        wait_ms = math.ceil((starts[0] + self.window_s - now) * 1000)
        return min(max(wait_ms, 1), round(self.window_s * 1000))

    def record(self, user: str, now: float) -> None:
        """A run of `user` started at `now`."""
        self._starts.setdefault(user, deque()).append(now)
