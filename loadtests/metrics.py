"""Exact latency statistics, outside Locust's rounding, mergeable across worker processes.

Values are recorded in microseconds in HDR histograms (3 significant digits: every percentile is
within 0.1% of the true sample), so p99.9 of a 3 ms inter-token gap is not rounded to a whole
millisecond as Locust's own statistics are. Workers ship encoded histograms to the master, which
adds them: the merged percentiles are those of all samples together.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US, HIGHEST_US, DIGITS = 1, 3_600_000_000, 3
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}
LATENCIES = ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms", "connect_ms", "ping_ms")

DEFINITIONS = {
    "ttft_ms": "time to first token: message sent to the first non-empty text_delta received",
    "itl_ms": "inter-token latency: gaps between consecutive text_delta events of a run, pooled over runs",
    "tpot_ms": "time per output token (vLLM's): (E2E - TTFT) / (output tokens - 1), per run with 2+ tokens",
    "e2e_ms": "end to end: message sent to the run's complete received",
    "connect_ms": "WebSocket handshake to the session event",
    "ping_ms": "ping sent to pong received on held connections",
    "output_tokens": "usage.output_tokens of complete when the server reports it, else the text_delta count",
}


def _histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


@dataclass
class Recorder:
    """Every measurement of one process; `export`/`merge` carry them to the master."""

    histograms: dict[str, HdrHistogram] = field(
        default_factory=lambda: {name: _histogram() for name in LATENCIES}
    )
    counters: Counter[str] = field(default_factory=Counter)

    def latency(self, name: str, seconds: float) -> None:
        micros = max(LOWEST_US, min(HIGHEST_US, round(seconds * 1_000_000)))
        self.histograms[name].record_value(micros)

    def count(self, name: str, amount: int = 1) -> None:
        self.counters[name] += amount

    def export(self) -> dict[str, Any]:
        """A JSON-able snapshot of everything recorded since the last export, then a reset."""
        snapshot = {
            "histograms": {k: h.encode().decode() for k, h in self.histograms.items() if h.get_total_count()},
            "counters": dict(self.counters),
        }
        self.histograms = {name: _histogram() for name in LATENCIES}
        self.counters = Counter()
        return snapshot

    def merge(self, snapshot: dict[str, Any]) -> None:
        for name, encoded in snapshot.get("histograms", {}).items():
            self.histograms[name].add(HdrHistogram.decode(encoded.encode()))
        self.counters.update(snapshot.get("counters", {}))

    def percentiles(self, name: str) -> dict[str, float | None]:
        histogram = self.histograms[name]
        if not histogram.get_total_count():
            return {key: None for key in PERCENTILES}
        return {key: round(histogram.get_value_at_percentile(p) / 1000, 3) for key, p in PERCENTILES.items()}

    def samples(self, name: str) -> int:
        return int(self.histograms[name].get_total_count())
