"""The timing rules asp check-client judges reconnects by (ASP-CLS-004), as a table."""

from __future__ import annotations

import random

import pytest

from conformance.client.timing import (
    CAP_MS,
    EARLY_MS,
    JITTER_MIN_SAMPLES,
    LATE_MS,
    bounds,
    ceiling_ms,
    jitter,
)

ATTEMPTS = [0, 1, 2, 3, 0, 1, 2, 3]


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(0, 500), (1, 1000), (3, 4000), (5, 16000), (6, 30000), (20, 30000)]
)
def test_the_ceiling_doubles_from_500_ms_up_to_the_30_s_cap(attempt: int, ceiling: float):
    assert ceiling_ms(attempt) == ceiling <= CAP_MS


@pytest.mark.parametrize(
    ("delay", "attempt", "floor", "holds"),
    [
        (0, 0, 0, True),
        (500 + LATE_MS, 0, 0, True),
        (500 + LATE_MS + 1, 0, 0, False),
        (3000, 0, 0, False),  # the seed template's fixed retry
        (3000, 3, 0, True),
        (1000 - EARLY_MS, 0, 1000, True),  # 1013: at least 1000 ms
        (900, 0, 1000, False),
        (1000 + 500 + LATE_MS, 0, 1000, True),
        (1000 + 500 + LATE_MS + 1, 0, 1000, False),
    ],
)
def test_a_delay_is_judged_against_its_attempts_bounds(delay: float, attempt: int, floor: float, holds: bool):
    assert bounds(attempt, floor_ms=floor).holds(delay) is holds


def test_full_jitter_passes_and_the_false_alarm_rate_is_about_one_in_ten_thousand():
    draws = random.Random(1234)
    trials = 20000
    alarms = 0
    for _ in range(trials):
        delays = [(draws.uniform(0, ceiling_ms(a)) + draws.uniform(1, 30), a) for a in ATTEMPTS]
        alarms += not jitter(delays).jittered
    assert alarms / trials < 0.001


@pytest.mark.parametrize(
    "delays",
    [
        [0.0] * 8,  # a reconnect storm
        [100.0 + i for i in range(8)],  # one small fixed delay
        [3000.0] * 8,  # one large fixed delay
        [ceiling_ms(a) for a in ATTEMPTS],  # exponential, no jitter
        [ceiling_ms(a) / 2 for a in ATTEMPTS],  # half the ceiling every time
    ],
)
def test_delays_without_jitter_are_caught(delays: list[float]):
    assert not jitter(list(zip(delays, ATTEMPTS, strict=True))).jittered


@pytest.mark.parametrize(
    "delays",
    [
        [5.0, 6.0, 180.0, 5.0, 7.0, 5.0, 6.0, 4.0],  # one spike of a loaded machine at attempt 2
        [240.0, 5.0, 6.0, 5.0, 230.0, 5.0, 6.0, 4.0],  # two, both within the wire's noise
        [5.0, 6.0, 5.0, 400.0, 7.0, 5.0, 6.0, 4.0],  # one beyond it
    ],
)
def test_a_storm_on_a_loaded_machine_is_not_taken_for_jitter(delays: list[float]):
    assert not jitter(list(zip(delays, ATTEMPTS, strict=True))).jittered


def test_the_noise_allowance_scales_with_the_late_tolerance():
    delays = [5.0, 6.0, 5.0, 400.0, 7.0, 5.0, 1200.0, 4.0]  # two above 250 ms, none above 1250
    assert jitter(list(zip(delays, ATTEMPTS, strict=True))).jittered
    assert not jitter(list(zip(delays, ATTEMPTS, strict=True)), noise_ms=LATE_MS * 5).jittered


def test_fewer_than_eight_reconnects_prove_no_jitter():
    assert not jitter([(100.0, 0)] * (JITTER_MIN_SAMPLES - 1)).jittered
