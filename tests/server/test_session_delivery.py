"""Session delivery without a socket: an event is written at once when the transport takes it,
through the pump when it does not, and seq and order are the same either way."""

from __future__ import annotations

import asyncio
import json

from reference_server.sessions import DeliveryLimits, Session

LIMITS = DeliveryLimits(
    replay_window=100,
    send_timeout_s=1,
    max_pending_events=1000,
    max_coalesced_chars=1000,
    max_event_bytes=65536,
)


class RecordingSink:
    """A connection that takes writes at once while `ready`, else only through the awaited send."""

    def __init__(self, ready: bool) -> None:
        self.cursor = 0
        self.ready = ready
        self.now: list[dict[str, object]] = []  # written without awaiting
        self.awaited: list[dict[str, object]] = []

    def send_now(self, text: str) -> bool:
        if self.ready:
            self.now.append(json.loads(text))
        return self.ready

    async def send_text(self, text: str) -> None:
        self.awaited.append(json.loads(text))

    async def close(self, code: int, reason: str = "") -> None:
        pass


def deltas(count: int) -> list[dict[str, object]]:
    return [{"type": "text_delta", "run_id": "run_1", "delta": f"t{n} "} for n in range(count)]


async def test_an_event_nothing_waits_ahead_of_is_written_in_the_emitting_call() -> None:
    session = Session(user_id="u", conversation_id="c", capabilities=[], limits=LIMITS)
    sink = RecordingSink(ready=True)
    session.attach(sink)
    for event in deltas(3):
        session.emit(event)
        assert sink.now[-1]["delta"] == event["delta"]  # before any await: no task involved
    assert [e["seq"] for e in sink.now] == [1, 2, 3] and sink.cursor == 3 and not sink.awaited
    await session.close()


async def test_a_transport_that_cannot_take_it_now_gets_it_through_the_pump_in_order() -> None:
    session = Session(user_id="u", conversation_id="c", capabilities=[], limits=LIMITS)
    sink = RecordingSink(ready=False)
    session.attach(sink)
    for event in deltas(3):
        session.emit(event)
    await session.flush(timeout=2.0)
    sink.ready = True
    session.emit(deltas(4)[3])
    await session.flush(timeout=2.0)
    received = sorted(sink.awaited + sink.now, key=lambda e: int(str(e["seq"])))
    assert [e["seq"] for e in received] == list(range(1, len(received) + 1))
    assert "".join(str(e["delta"]) for e in received) == "t0 t1 t2 t3 "
    assert sink.cursor == session.seq
    await session.close()


async def test_a_detached_session_keeps_sequencing_for_replay() -> None:
    session = Session(user_id="u", conversation_id="c", capabilities=[], limits=LIMITS)
    for event in deltas(2):
        session.emit(event)
    await session.flush(timeout=2.0)
    sink = RecordingSink(ready=True)
    session.attach(sink, after_seq=0)
    await asyncio.sleep(0.05)
    session.emit(deltas(3)[2])
    await session.flush(timeout=2.0)
    received = sorted(sink.now + sink.awaited, key=lambda e: int(str(e["seq"])))
    # replayed from seq 1 (queued deltas may have been merged), then the new one at once
    assert [e["seq"] for e in received] == list(range(1, len(received) + 1))
    assert "".join(str(e["delta"]) for e in received) == "t0 t1 t2 "
    assert sink.now[-1] == {"type": "text_delta", "run_id": "run_1", "delta": "t2 ", "seq": session.seq}
    await session.close()
