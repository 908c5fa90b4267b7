"""Exact statistics, merged across workers; the summary's error rate, SLO gates and verdict."""

from __future__ import annotations

import random

import pytest

from loadtests.metrics import Recorder
from loadtests.summary import SloError, build_summary, judge, parse_slo


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


def _summary(bounds: str = "", **counters: int) -> dict:
    recorder = Recorder()
    for _ in range(counters.pop("samples", 0)):
        recorder.latency("ttft_ms", 0.050)
        recorder.latency("e2e_ms", 0.100)
    for name, amount in counters.items():
        recorder.count(name, amount)
    return build_summary(recorder, scenario="throughput", users=1, duration_s=10, bounds=parse_slo(bounds))


def test_slo_gates_pass_and_miss_with_their_values():
    summary = _summary(
        "ttft_p99_ms=100,error_rate=0,tokens_per_s_min=50",
        samples=100,
        turns_succeeded=100,
        output_tokens=1000,
    )
    assert summary["verdict"] == {
        "passed": True,
        "exit_code": 0,
        "reasons": [],
        "slo": [
            {"name": "ttft_p99_ms", "bound": 100.0, "value": 50.015, "met": True},
            {"name": "error_rate", "bound": 0.0, "value": 0.0, "met": True},
            {"name": "tokens_per_s_min", "bound": 50.0, "value": 100.0, "met": True},
        ],
    }
    missed = judge(summary, parse_slo("ttft_p99_ms=10,tokens_per_s_min=500,itl_p99_ms=5"))
    assert missed["exit_code"] == 3 and len(missed["reasons"]) == 3
    assert "SLO itl_p99_ms: no samples" in missed["reasons"]


def test_the_error_rate_is_over_attempts_and_errors_fail_without_a_budget():
    summary = _summary(samples=3, turns_succeeded=3, turns_failed=1, **{"error:stalled": 1})
    assert summary["errors"] == 1 and summary["error_rate"] == 0.25  # 1 failed of 4 attempted turns
    assert summary["verdict"]["exit_code"] == 1  # an error, and no --slo error_rate allows any
    assert judge(summary, {"error_rate": 0.25})["exit_code"] == 0
    assert judge(summary, {"error_rate": 0.2})["exit_code"] == 3
    refused = _summary(connections_attempted=2, connections_failed=2, **{"error:refused:4001": 2})
    assert refused["error_rate"] == 1.0 and refused["errors_by_kind"] == {"refused:4001": 2}


def test_nothing_measured_fails_whatever_the_slo():
    nothing = _summary("error_rate=1")
    assert nothing["error_rate"] is None
    assert nothing["verdict"]["exit_code"] == 1
    assert nothing["verdict"]["reasons"][0] == "nothing measured: no successful turn"


def test_expected_refusals_of_the_connections_scenario_are_not_errors_but_more_are():
    recorder = Recorder()
    recorder.latency("connect_ms", 0.01)
    recorder.count("rejected:1013", 7)
    recorder.count("rejected_expected:1013", 7)
    summary = build_summary(recorder, scenario="connections", users=12, duration_s=5, expected_rejections=5)
    assert summary["errors"] == 2 and summary["errors_by_kind"] == {"refused:1013": 2}
    assert summary["connections"]["rejected_by_code"] == {"1013": 7}


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("ttft_p99_ms", "expected NAME=VALUE"),
        ("ttft_p99_ms=fast", "is not a number"),
        ("ttft=5", "unknown name 'ttft'"),
        ("ttft_p95_ms=5", "unknown name"),
        ("error_rates=0.1", "unknown name"),
    ],
)
def test_slo_expressions_that_cannot_work_are_refused_in_one_line(text, complaint):
    with pytest.raises(SloError, match=complaint) as refused:
        parse_slo(text)
    assert "\n" not in str(refused.value)
