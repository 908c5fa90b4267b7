"""The byte bounds' decisions (protocol/sizing): the honest replay window and the outbox bound."""

from __future__ import annotations

import pytest

from reference_server.protocol.sizing import outbox_overflow, pending_weight, replay_capacity

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("window", "budget", "event", "announced"),
    [
        (1000, 16 * MIB, MIB, 16),  # the defaults: 16 events of 1 MiB
        (1000, 16 * MIB, 65_536, 256),
        (10, 16 * MIB, 65_536, 10),  # the setting when the bytes allow it
        (1000, MIB - 1, MIB, 0),  # no room for one event: no resume promised
        (0, 16 * MIB, MIB, 0),
    ],
)
def test_replay_capacity_is_the_count_whose_largest_events_fit(window, budget, event, announced):
    assert replay_capacity(window, budget, event) == announced
    assert announced * event <= budget


def test_outbox_overflow_by_count_or_bytes():
    assert outbox_overflow(10, 1000, max_events=10, max_bytes=1000) is None
    assert outbox_overflow(11, 0, max_events=10, max_bytes=1000) == "too many pending events"
    assert outbox_overflow(1, 1001, max_events=10, max_bytes=1000) == "over 1000 pending bytes"


def test_pending_weight_counts_delta_text_and_other_events_by_their_size_once_fitted():
    assert pending_weight({"type": "text_delta", "run_id": "r", "delta": "x" * 5000}, 65_536) >= 5000
    assert pending_weight({"type": "tool_result", "content": "y" * 7000}, 65_536) > 7000
    huge = {"type": "history", "messages": [{"role": "assistant", "content": "z" * 300_000}]}
    assert pending_weight(huge, 65_536) == 65_536  # fit shortens it: it stands for what is sent
