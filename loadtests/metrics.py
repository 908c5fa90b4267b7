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
    "turn": "one message and the run that answers it. It succeeds when the run ends with complete "
    "finish_reason stop or length, every event from run_started to complete carries that run's run_id, seq "
    "rises by one, every frame is a JSON event and no gap between events exceeds --event-timeout; "
    "otherwise it fails and is counted in errors_by_kind. Unless the run failed by the protocol's rules "
    "(error then complete) or the message was refused, the connection is then closed and the user "
    "reconnects for its next turn, so no late event of a failed run is measured as the next one's. A turn "
    "the end of the test kills mid-way is interrupted: neither attempted nor measured",
    "latency_figures": "TTFT, ITL, TPOT and E2E come from successful turns only, as vLLM's benchmark counts "
    "only successful requests: a failed turn is an error, never a latency sample",
    "ttft_ms": "time to first token: message sent to the first non-empty text_delta of its run",
    "itl_ms": "inter-token latency: gaps between consecutive non-empty text_delta events of a run, pooled "
    "over runs",
    "tpot_ms": "time per output token (vLLM's): (E2E - TTFT) / (output tokens - 1), per run with 2+ tokens",
    "e2e_ms": "end to end: message sent to the run's complete received",
    "connect_ms": "WebSocket handshake to the session event",
    "ping_ms": "ping sent to pong received on held connections",
    "output_tokens": "usage.output_tokens of complete when the server reports it, else the text_delta count",
    "error_rate": "errors / attempts. Attempts: turns and pings attempted, and connections that failed or "
    "were refused (each stands for the operation it could not make). Errors: failed turns, failed pings, "
    "failed or refused connections. In the connections scenario, 1013 refusals up to --extra are the "
    "expected outcome and neither",
    "verdict": "fail (exit 1) when nothing was measured (no successful turn; no accepted connection; no "
    "answered ping) or when there were errors and no --slo error_rate allows them; fail (exit 3) when "
    "an --slo is missed; else pass (exit 0)",
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
