"""How `asp check-client` judges reconnect timing (ASP-CLS-004), as pure functions.

The schedule is the spec's: attempt n (0 for the first reconnect after a connection that lived
at least 10 s, or after the first connection) waits a delay drawn from [0, min(cap, base * 2^n)]
(full jitter), base 500 ms, factor 2, cap 30 s; after 1013 the first delay is at least
`min_delay_ms` of the registry (1000 ms), and at most that floor plus the attempt's ceiling.

A delay is measured on the wire: from the moment the kit closed, dropped or refused the
connection to the arrival of the next upgrade request. The tolerances cover what that adds
(the client noticing the close, connecting again) on a loaded machine; MCP's client retry check
uses -50/+200 ms.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

BASE_MS = 500.0
FACTOR = 2.0
CAP_MS = 30_000.0
RESET_AFTER_S = 10.0
EARLY_MS = 50.0  # a delay may be measured this much shorter than the client's floor
LATE_MS = 250.0  # ... and this much longer than its ceiling (scaled by --timeout-multiplier)
JITTER_MIN_SAMPLES = 8
# Full jitter draws delay/ceiling uniformly from [0, 1]: the spread (max - min) of 8 such draws is
# below 0.2 with probability 8 * 0.2^7 - 7 * 0.2^8, about 1e-4. A client whose delays are all
# alike (one fixed delay, or exactly the ceiling every time) has a spread near 0.
JITTER_MIN_SPREAD = 0.2
# A client that reconnects at once is measured at a few ms on a quiet machine, but a loaded one
# adds spikes of 100-300 ms now and then, which full jitter's spread rule alone takes for jitter.
# So at least two delays must stand above the wire's noise (the late tolerance): a correct client
# has fewer with probability about 5e-5 (most of its draws at attempts 2 and 3 exceed 250 ms).
JITTER_MIN_ABOVE_NOISE = 2


def ceiling_ms(attempt: int) -> float:
    """The largest delay of reconnect attempt `attempt` (0-based): min(cap, base * 2^attempt)."""
    return min(CAP_MS, BASE_MS * FACTOR**attempt)


@dataclass(frozen=True)
class Bounds:
    """The delays a client may take, in ms, tolerances included."""

    low_ms: float
    high_ms: float
    rule: str  # the bound in words, as the report states it

    def holds(self, delay_ms: float) -> bool:
        return self.low_ms <= delay_ms <= self.high_ms


def bounds(attempt: int, *, floor_ms: float = 0.0, late_ms: float = LATE_MS) -> Bounds:
    """Where the delay of attempt `attempt` must fall: [floor, floor + ceiling] (the floor is 0
    but after 1013) widened by EARLY_MS below a non-zero floor and `late_ms` above."""
    ceiling = ceiling_ms(attempt)
    low = max(0.0, floor_ms - EARLY_MS) if floor_ms else 0.0
    high = floor_ms + ceiling + late_ms
    floor_words = f"{floor_ms:.0f} + " if floor_ms else ""
    return Bounds(
        low,
        high,
        f"attempt {attempt}: [{floor_ms:.0f}, {floor_words}min({CAP_MS:.0f}, {BASE_MS:.0f} * 2^{attempt})]"
        f" ms, tolerance -{EARLY_MS:.0f}/+{late_ms:.0f} ms",
    )


@dataclass(frozen=True)
class JitterVerdict:
    jittered: bool
    description: str


def jitter(delays: list[tuple[float, int]], *, noise_ms: float = LATE_MS) -> JitterVerdict:
    """Whether reconnect delays show jitter: `delays` are (measured ms, attempt) pairs.

    Jittered when at least JITTER_MIN_ABOVE_NOISE delays exceed `noise_ms` (what the wire may add
    to a delay of 0), the delays normalised by their ceilings spread over at least
    JITTER_MIN_SPREAD of the range, and the raw delays are not all within max(100 ms, 30 % of
    their median) of one another (a fixed delay, whatever the attempt). Needs JITTER_MIN_SAMPLES
    delays. Implements the jitter clause of ASP-CLS-004.
    """
    if len(delays) < JITTER_MIN_SAMPLES:
        return JitterVerdict(False, f"only {len(delays)} reconnects; {JITTER_MIN_SAMPLES} are needed")
    shown = ", ".join(f"{d:.0f}" for d, _ in delays)
    above = sum(1 for delay, _ in delays if delay > noise_ms)
    if above < JITTER_MIN_ABOVE_NOISE:
        return JitterVerdict(
            False,
            f"delays {shown} ms: {above} above {noise_ms:.0f} ms, what the wire may add to reconnecting "
            f"at once (full jitter has at least {JITTER_MIN_ABOVE_NOISE} but with probability about 5e-5)",
        )
    normalised = [min(1.0, delay / ceiling_ms(attempt)) for delay, attempt in delays]
    raw = [delay for delay, _ in delays]
    spread = max(normalised) - min(normalised)
    raw_spread = max(raw) - min(raw)
    alike = max(100.0, 0.3 * statistics.median(raw))
    if spread < JITTER_MIN_SPREAD:
        return JitterVerdict(
            False,
            f"delays {shown} ms are alike: delay/ceiling spans only {spread:.2f} "
            f"(full jitter spans at least {JITTER_MIN_SPREAD} but with probability about 1e-4)",
        )
    if raw_spread <= alike:
        return JitterVerdict(False, f"delays {shown} ms are all within {alike:.0f} ms of one another")
    return JitterVerdict(True, f"delays {shown} ms; delay/ceiling spans {spread:.2f}")
