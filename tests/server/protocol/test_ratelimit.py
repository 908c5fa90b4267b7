"""The sliding window of ASP-LIM-009 as arithmetic."""

from __future__ import annotations

import pytest

from reference_server.protocol.ratelimit import ALLOWED, RateDecision, decide


@pytest.mark.parametrize(
    "starts,now,messages,window_s,decision",
    [
        ([], 0.0, 3, 0.4, ALLOWED),
        ([0.0, 0.1], 0.2, 3, 0.4, ALLOWED),
        ([0.0, 0.1, 0.2], 0.3, 3, 0.4, RateDecision(False, 100)),  # the oldest leaves at 0.4
        # defect 4: 3 per 400 ms announced; a 4th message 500 ms after the 3rd is not refused
        ([0.0, 0.1, 0.2], 0.7, 3, 0.4, ALLOWED),
        ([0.0, 0.1, 0.2], 0.4, 3, 0.4, ALLOWED),  # exactly window_ms later the oldest has left
        ([0.0, 0.1, 0.2], 0.3999, 3, 0.4, RateDecision(False, 1)),
        ([5.0], 5.0, 1, 60.0, RateDecision(False, 60_000)),  # at most window_ms
        ([0.0, 1.0, 2.0, 3.0], 3.5, 3, 4.0, RateDecision(False, 1500)),  # more counted than allowed
    ],
)
def test_decide(starts: list[float], now: float, messages: int, window_s: float, decision: RateDecision):
    assert decide(starts, now, messages, window_s) == decision


def test_a_message_sent_after_retry_after_ms_is_not_refused_for_the_rate():
    starts = [10.0, 10.123, 10.2]
    refused = decide(starts, 10.25, 3, 0.4)
    assert not refused.allowed and 0 < refused.retry_after_ms <= 400
    assert decide(starts, 10.25 + refused.retry_after_ms / 1000, 3, 0.4).allowed
