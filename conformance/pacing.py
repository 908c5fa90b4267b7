"""The kit's own pace under the server's announced rate limit (ASP-LIM-004), per user.

The kit counts the `message` frames it sends, per user, and holds a message back while that user
already has `messages` counted frames within the window (plus a margin for the trip to the
server). Which frames count: for a server announcing 1.1 or later, valid messages only (invalid
ones never start a run, ASP-LIM-009); for a 1.0 server every `message` frame, valid or not (1.0
left open whether refused messages count). So a server's `rate_limited` answer to a message the
kit sent within the announced limit is the server's fault, and the kit never provokes one by
accident. A wait longer than the check's --max-wait makes the case untestable.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from conformance.credentials import Unavailable
from conformance.terms import RateLimit
from spec import jsondepth
from spec.schemas import check_client_message


def is_message(frame: str | bytes, *, valid_only: bool = False) -> bool:
    """Whether a frame the kit sends is a `message` (the only type the rate limit counts); with
    `valid_only`, a `message` that passes its schema."""
    if not isinstance(frame, str) or '"message"' not in frame:
        return False
    try:
        parsed = jsondepth.loads(frame)
    except (ValueError, RecursionError):
        return False
    if not isinstance(parsed, dict) or parsed.get("type") != "message":
        return False
    return not valid_only or not check_client_message(parsed)


class RatePacer:
    """Sliding-window accounting of the kit's `message` frames, per user identity."""

    def __init__(self, rate: RateLimit | None, max_wait_s: float, *, counts_invalid: bool = True) -> None:
        self.rate = rate
        self.max_wait_s = max_wait_s
        self.counts_invalid = counts_invalid  # a 1.0 server may count invalid messages too
        self.margin_s = max(1.0, rate.window_s * 0.1) if rate else 0.0
        self._sent: dict[str, deque[float]] = {}

    def _window(self, identity: str, now: float) -> deque[float]:
        sent = self._sent.setdefault(identity, deque())
        assert self.rate is not None
        while sent and sent[0] + self.rate.window_s + self.margin_s <= now:
            sent.popleft()
        return sent

    def counts(self, frame: str | bytes) -> bool:
        """Whether the server may count this frame against the user's rate limit."""
        return is_message(frame, valid_only=not self.counts_invalid)

    def room(self, identity: str) -> int | None:
        """How many more counted messages fit this user's window now (None: no limit announced)."""
        return self.rate.messages - self.in_window(identity) if self.rate else None

    def in_window(self, identity: str) -> int:
        """How many of this user's messages the server may still count."""
        return len(self._window(identity, time.monotonic())) if self.rate else 0

    def record(self, identity: str) -> None:
        """Count a message sent without pacing (a case that goes over the limit on purpose)."""
        if self.rate:
            self._sent.setdefault(identity, deque()).append(time.monotonic())

    async def clear(self, identity: str, allow: Callable[[float, str], None]) -> None:
        """Wait until none of this user's messages can still count (a case that exhausts the limit
        on purpose starts from an empty window).

        Raises:
            Unavailable: the wait would be longer than --max-wait.
        """
        if self.rate is None:
            return
        sent = self._window(identity, time.monotonic())
        if not sent:
            return
        wait = sent[-1] + self.rate.window_s + self.margin_s - time.monotonic()
        if wait > self.max_wait_s:
            raise Unavailable(
                f"this user sent messages within the announced rate-limit window ({self.rate.window_s:g}s) "
                "in earlier cases, and waiting it out exceeds --max-wait: give more users or --jwt-secret"
            )
        allow(wait, "an empty rate-limit window")
        await asyncio.sleep(max(0.0, wait))

    async def acquire(self, identity: str, allow: Callable[[float, str], None], room: int = 1) -> None:
        """Wait until `room` more messages of this user fit in the window, then count one.

        `allow(seconds, what)` is told of the wait first (the case's budget grows by it).

        Raises:
            Unavailable: the wait would be longer than --max-wait.
        """
        if self.rate is None:
            return
        if room > self.rate.messages:
            raise Unavailable(
                f"needs {room} messages within the announced rate limit of {self.rate.messages} "
                f"per {self.rate.window_s:g}s"
            )
        now = time.monotonic()
        sent = self._window(identity, now)
        excess = len(sent) + room - self.rate.messages
        if excess > 0:
            wait = sent[excess - 1] + self.rate.window_s + self.margin_s - now
            if wait > self.max_wait_s:
                raise Unavailable(
                    f"this user's announced rate limit ({self.rate.messages} messages per "
                    f"{self.rate.window_s:g}s) is used up by earlier cases for {wait:.0f}s, longer "
                    "than --max-wait: give more users (--token-file) or --jwt-secret"
                )
            allow(wait, "the kit's own pace under the announced rate limit")
            await asyncio.sleep(wait)
            sent = self._window(identity, time.monotonic())
        sent.append(time.monotonic())
