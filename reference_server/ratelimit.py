"""Per-user message rate limit on the `limits` library's moving window."""

from __future__ import annotations

import time

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter


class MessageRateLimiter:
    """`messages` per `window_ms`, per user; `check` returns 0 when allowed, else ms to wait."""

    def __init__(self, messages: int, window_ms: int) -> None:
        seconds = max(1, round(window_ms / 1000))
        self.item = RateLimitItemPerSecond(messages, seconds)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def check(self, user_id: str) -> int:
        if await self.limiter.hit(self.item, user_id):
            return 0
        stats = await self.limiter.get_window_stats(self.item, user_id)
        return max(1, int((stats.reset_time - time.time()) * 1000))
