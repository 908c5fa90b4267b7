"""Exact statistics: percentiles within HDR precision, and merging equals recording together."""

from __future__ import annotations

import random

from loadtests.metrics import Recorder
from loadtests.summary import SloError, breaches, build_summary, parse_slo


def exact(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[int(fraction * (len(ordered) - 1) + 0.5)]


def test_percentiles_are_within_a_tenth_of_a_percent_and_not_rounded_to_milliseconds():
    rng = random.Random(7)
    values = [rng.uniform(0.0005, 0.004) for _ in range(20_000)]  # 0.5 to 4 ms: Locust would say 1, 2, 3, 4
    recorder = Recorder()
    for value in values:
        recorder.latency("itl_ms", value)
    got = recorder.percentiles("itl_ms")
    for key, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        truth = exact(values, fraction) * 1000
        assert abs(got[key] - truth) / truth < 0.002, (key, got[key], truth)
    assert got["p50"] != round(got["p50"])


def test_merging_worker_snapshots_equals_recording_in_one_process():
    rng = random.Random(3)
    values = [rng.expovariate(50) for _ in range(5000)]
    whole, master = Recorder(), Recorder()
    workers = [Recorder(), Recorder()]
    for number, value in enumerate(values):
        whole.latency("ttft_ms", value)
        workers[number % 2].latency("ttft_ms", value)
        workers[number % 2].count("turns")
    for worker in workers:
        master.merge(worker.export())
    assert master.percentiles("ttft_ms") == whole.percentiles("ttft_ms")
    assert master.samples("ttft_ms") == 5000 and master.counters["turns"] == 5000
    assert workers[0].samples("ttft_ms") == 0  # export resets, so nothing is counted twice


def test_slo_parsing_and_breaches():
    recorder = Recorder()
    for _ in range(100):
        recorder.latency("ttft_ms", 0.050)
    recorder.count("turns", 100)
    recorder.count("output_tokens", 1000)
    summary = build_summary(recorder, scenario="throughput", users=1, duration_s=10)
    assert breaches(summary, parse_slo("ttft_p99_ms=100,error_rate=0,tokens_per_s_min=50")) == []
    missed = breaches(summary, parse_slo("ttft_p99_ms=10,tokens_per_s_min=500,itl_p99_ms=5"))
    assert len(missed) == 3 and any("no samples" in m for m in missed)
    for bad in ("ttft_p99_ms", "ttft_p99_ms=fast"):
        try:
            parse_slo(bad)
        except SloError:
            continue
        raise AssertionError(f"{bad!r} parsed")
