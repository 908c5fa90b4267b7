"""The rate limit as arithmetic: a sliding window over the run starts of one user (ASP-LIM-009).

A `message` is refused for the rate exactly when `messages` runs of the user started within the
preceding `window` (strictly: a run that started exactly `window` ago has left it); only messages
that start a run count. `retry_after_ms` is the time until the oldest counted run leaves the
window, rounded up to a whole millisecond, so a message sent after it is not refused for the rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_ms: int = 0


ALLOWED = RateDecision(True)


def decide(starts: Sequence[float], now: float, messages: int, window_s: float) -> RateDecision:
    """Whether a run may start at `now` given the user's earlier run starts (seconds, oldest first).

    Returns ALLOWED, or a refusal whose retry_after_ms is in [1, window_ms].
    """
    counted = [start for start in starts if start > now - window_s]
    if len(counted) < messages:
        return ALLOWED
    leaves_at = counted[len(counted) - messages] + window_s  # then fewer than `messages` are counted
    window_ms = max(1, math.ceil(window_s * 1000))
    wait_ms = math.ceil(round((leaves_at - now) * 1000, 6))
    return RateDecision(False, min(window_ms, max(1, wait_ms)))
