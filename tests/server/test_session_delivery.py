"""Session delivery without a socket: an event is written at once when the transport takes it,
through the pump when it does not, and seq and order are the same either way."""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from dataclasses import replace

from reference_server.protocol.sizing import pending_weight
from reference_server.sessions import DeliveryLimits, Session, SessionStore, SinkClosed

LIMITS = DeliveryLimits(
    replay_window=100,
    send_timeout_s=1,
    max_pending_events=1000,
    max_coalesced_chars=1000,
    max_event_bytes=65536,
)


def new_session(limits: DeliveryLimits = LIMITS) -> Session:
    return Session(user_id="u", conversation_id="c", capabilities=[], limits=limits)


class RecordingSink:
    """A connection that takes writes at once while `ready`, else only through the awaited send."""

    def __init__(self, ready: bool) -> None:
        self.cursor = 0
        self.ready = ready
        self.now: list[dict[str, object]] = []  # written without awaiting
        self.awaited: list[dict[str, object]] = []
        self.closed: list[int] = []  # close codes

    def send_now(self, text: str) -> bool:
        if self.ready:
            self.now.append(json.loads(text))
        return self.ready

    async def send_text(self, text: str) -> None:
        self.awaited.append(json.loads(text))

    async def close(self, code: int, reason: str = "") -> None:
        self.closed.append(code)


def attached(ready: bool, limits: DeliveryLimits = LIMITS) -> tuple[Session, RecordingSink]:
    """A new session and the connection it delivers to (`ready`: it takes writes at once)."""
    session = new_session(limits)
    sink = RecordingSink(ready)
    session.attach(sink)
    return session, sink


def deltas(count: int) -> list[dict[str, object]]:
    return [{"type": "text_delta", "run_id": "run_1", "delta": f"t{n} "} for n in range(count)]


async def test_an_event_nothing_waits_ahead_of_is_written_in_the_emitting_call() -> None:
    session, sink = attached(True)
    for event in deltas(3):
        session.emit(event)
        assert sink.now[-1]["delta"] == event["delta"]  # before any await: no task involved
    assert [e["seq"] for e in sink.now] == [1, 2, 3] and sink.cursor == 3 and not sink.awaited
    await session.close()


async def test_a_transport_that_cannot_take_it_now_gets_it_through_the_pump_in_order() -> None:
    session, sink = attached(False)
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
    session = new_session()
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


async def test_coalescing_never_makes_a_delta_longer_than_max_coalesced_chars() -> None:
    """Deltas that piled up behind a blocked connection merge up to max_coalesced_chars (its
    description: the largest delta made by coalescing), never one delta over it."""
    session, sink = attached(False, replace(LIMITS, max_coalesced_chars=100))
    for n in range(10):
        session.emit({"type": "text_delta", "run_id": "run_1", "delta": f"{n}" * 40})
    await session.flush(timeout=2.0)
    sink.ready = True
    session.emit({"type": "complete", "run_id": "run_1", "finish_reason": "stop"})
    await session.flush(timeout=2.0)
    sent = [
        str(e["delta"])
        for e in sorted(sink.awaited + sink.now, key=lambda e: int(str(e["seq"])))
        if "delta" in e
    ]
    assert "".join(sent) == "".join(f"{n}" * 40 for n in range(10))  # nothing lost, in order
    assert max(len(delta) for delta in sent) == 80, [len(delta) for delta in sent]  # two of 40, not three
    await session.close()


# --- pins: a resume accepted, its connection not attached yet ------------------------------------

PINNED_LIMITS = replace(LIMITS, replay_window=3, max_pending_events=20)


def separate(first: int, count: int) -> list[dict[str, object]]:
    """Deltas of different runs: never merged, one seq each."""
    return [
        {"type": "text_delta", "run_id": f"run_{n}", "delta": f"t{n} "} for n in range(first, first + count)
    ]


async def settle() -> None:
    """Let the pump task run until it waits (sequencing without a connection never awaits)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def detached_with(count: int) -> Session:
    session = new_session(PINNED_LIMITS)
    for event in separate(0, count):
        session.emit(event)
    await settle()
    assert session.seq == count
    return session


async def held_by_two_pins() -> Session:
    """Three events kept, two resumes pinning from seq 2 and from seq 3, four more emitted: one is
    sequenced (seq 4), a fifth would evict seq 2, so three wait behind the pins."""
    session = await detached_with(3)
    session.pin(2)
    session.pin(3)
    for event in separate(3, 4):
        session.emit(event)
    await settle()
    return session


async def test_a_pinned_event_stays_in_the_replay_buffer_until_the_resume_attaches() -> None:
    session = await detached_with(2)  # seqs 1 and 2; a resume after last_seq 1 is accepted
    session.pin(2)
    for event in separate(2, 6):
        session.emit(event)
    await settle()
    assert session.seq == 4 and session.oldest_kept_seq == 2  # a fifth would evict seq 2
    sink = RecordingSink(ready=True)
    session.attach(sink, after_seq=1)  # releases the pin
    assert not session.pinned
    await session.flush(timeout=5.0)
    received = sorted(sink.now + sink.awaited, key=lambda e: int(str(e["seq"])))
    assert [e["seq"] for e in received] == list(range(2, 9))
    assert [e["delta"] for e in received] == [f"t{n} " for n in range(1, 8)]
    await session.close()


async def test_a_pin_with_nothing_to_replay_holds_the_events_after_it() -> None:
    session = await detached_with(2)
    session.pin(3)  # last_seq 2: nothing missed yet, but what comes during the switch is
    for event in separate(2, 5):
        session.emit(event)
    await settle()
    assert session.seq == 5 and session.oldest_kept_seq == 3
    sink = RecordingSink(ready=False)  # through the pump, awaited
    session.attach(sink, after_seq=2)
    await session.flush(timeout=5.0)
    assert [e["seq"] for e in sink.awaited] == [3, 4, 5, 6, 7]
    await session.close()


async def test_a_released_pin_lets_the_outbox_drain() -> None:
    session = await detached_with(2)
    session.pin(2)
    for event in separate(2, 6):
        session.emit(event)
    await settle()
    assert session.seq == 4
    session.release(2)  # the resume failed before it attached (its connection closed, a write raised)
    assert not session.pinned
    await settle()
    assert session.seq == 8 and session.oldest_kept_seq == 6  # sequenced for replay as before
    session.release(2)  # a second release of the same resume does nothing
    assert session.seq == 8
    await session.close()


async def test_two_pins_hold_the_older_until_both_are_released() -> None:
    session = await held_by_two_pins()
    assert session.seq == 4
    session.release(2)
    await settle()
    assert session.seq == 5 and session.pinned
    session.release(3)
    await settle()
    assert session.seq == 7 and not session.pinned
    await session.close()


async def test_release_all_lets_every_pin_go_and_the_held_events_are_sequenced() -> None:
    """The session leaves this process (a hand-over): every pin goes at once, and what they held
    back is sequenced into the replay buffer, in order, as the releases one by one would have."""
    session = await held_by_two_pins()
    assert session.seq == 4 and session.pinned  # held back: a fifth would evict seq 2
    session.release_all()
    assert not session.pinned
    await settle()
    assert session.seq == 7 and session.oldest_kept_seq == 5
    assert [json.loads(text)["delta"] for text in session._buffer] == ["t4 ", "t5 ", "t6 "]
    session.release_all()  # a second time, and later releases of the resumes, do nothing
    session.release(2)
    await settle()
    assert session.seq == 7
    await session.close()


async def test_release_all_without_a_pin_changes_nothing() -> None:
    """No pin: the same seqs, texts and deliveries as without the call; no pump for nothing."""
    session, sink = attached(ready=True)
    for event in separate(0, 3):
        session.emit(event)
    assert [e["seq"] for e in sink.now] == [1, 2, 3]
    session.release_all()
    assert session._pump is None and not session.pinned
    for event in separate(3, 2):
        session.emit(event)
    await settle()
    assert [e["seq"] for e in sink.now] == [1, 2, 3, 4, 5] and sink.awaited == []
    assert session.seq == 5 and session.oldest_kept_seq == 1
    await session.close()


async def test_a_pinned_outbox_is_bounded_then_the_pin_is_given_up() -> None:
    session = await detached_with(2)
    session.pin(2)
    for event in separate(2, PINNED_LIMITS.max_pending_events + 5):
        session.emit(event)
    await settle()
    assert not session.pinned  # given up at max_pending_events: memory stays bounded (ASP-LIM-005)
    assert session.seq == PINNED_LIMITS.max_pending_events + 7
    sink = RecordingSink(ready=True)
    session.attach(sink, after_seq=1)
    await settle()
    assert sink.closed == [4004]  # the resume fell out of the replay window: a slow consumer's close
    await session.close()


async def test_a_pinned_session_is_not_swept_while_its_resume_switches() -> None:
    store = SessionStore(ttl_s=0.0)
    session = await detached_with(1)
    store.add(session)
    session.pin(2)
    await asyncio.sleep(0.01)
    await store.sweep()
    assert store.get(session.id) is session
    session.release(2)
    await asyncio.sleep(0.01)
    await store.sweep()
    assert store.get(session.id) is None
    await session.close()


async def test_a_pinned_mirror_holds_what_it_relays_until_the_resume_attaches() -> None:
    """A session another process sequences (shared sessions) is mirrored: its events are relayed
    with their seq. Pinned, the mirror keeps each from the pinned one on, however many come."""
    session = new_session(PINNED_LIMITS)
    session.seq = 4  # the resume's last_seq: the mirror starts after it
    session.pin(5)
    texts = {seq: json.dumps({"type": "pong", "seq": seq}) for seq in range(5, 15)}
    for seq, text in texts.items():
        session.relay(seq, text)
    await settle()
    assert session.seq == 7 and session.oldest_kept_seq == 5  # the rest waits in order
    session.relay(9, texts[9])  # a duplicate of one that waits: dropped
    sink = RecordingSink(ready=False)
    session.attach(sink, after_seq=4)
    await session.flush(timeout=5.0)
    assert [e["seq"] for e in sink.awaited] == list(range(5, 15))
    await session.close()


class BlockedSink(RecordingSink):
    """A connection whose client never reads: nothing is written at once, a send never returns."""

    def __init__(self) -> None:
        super().__init__(ready=False)
        self.gone = asyncio.Event()

    async def send_text(self, text: str) -> None:
        await self.gone.wait()  # until closed: a closed connection's send fails
        raise SinkClosed

    async def close(self, code: int, reason: str = "") -> None:
        await super().close(code, reason)
        self.gone.set()


async def test_a_mirror_holds_what_it_relays_until_its_connection_is_sent_it() -> None:
    """A batch relayed at once, larger than replay_window, to a connection that takes every frame:
    nothing it has not been sent yet is evicted, so it gets every event in order and is not closed
    4004 (only a slow consumer is, ASP-LIM-005)."""
    session = new_session(PINNED_LIMITS)
    session.seq = 4
    sink = RecordingSink(ready=True)
    session.attach(sink)
    count = PINNED_LIMITS.max_pending_events  # a batch as large as the bound allows, window 3
    for seq in range(5, 5 + count):
        session.relay(seq, json.dumps({"type": "pong", "seq": seq}))
    await session.flush(timeout=5.0)
    assert sink.closed == []
    assert [e["seq"] for e in sink.now + sink.awaited] == list(range(5, 5 + count))
    assert session.seq == 4 + count and session.oldest_kept_seq == 2 + count
    await session.close()


async def test_a_mirror_closes_a_connection_that_never_drains_once_what_it_holds_is_over_the_bound() -> None:
    limits = replace(PINNED_LIMITS, send_timeout_s=600)
    session = new_session(limits)
    sink = BlockedSink()
    session.attach(sink)
    for seq in range(1, 1 + 3 + limits.max_pending_events):  # the window, then the bound: still held
        session.relay(seq, json.dumps({"type": "pong", "seq": seq}))
    await settle()
    assert sink.closed == [] and session.attached
    session.relay(24, json.dumps({"type": "pong", "seq": 24}))  # one over the bound
    await settle()
    assert sink.closed == [4004] and not session.attached
    await session.flush(timeout=5.0)
    assert session.seq == 24 and session.oldest_kept_seq == 22  # kept for a resume as before
    await session.close()


# --- gathering: a fast producer's deltas wait for the coalescing window under a loop timer ----------

GATHER_LIMITS = replace(PINNED_LIMITS, coalesce_s=0.05)


def gathering(session: Session, sink: RecordingSink, count: int) -> None:
    """Emit `count` deltas back to back to the attached `sink`: the first leaves at once (nothing
    came just before it), the rest gather."""
    sent = len(sink.now)
    for event in deltas(count):
        session.emit(event)
    assert [e["delta"] for e in sink.now[sent:]] == ["t0 "]


async def test_deltas_that_gather_leave_as_one_event_when_the_window_ends_with_no_task() -> None:
    session, sink = attached(True, GATHER_LIMITS)
    tasks = len(asyncio.all_tasks())
    gathering(session, sink, 5)
    assert len(asyncio.all_tasks()) == tasks  # a timer, not a pump task, waits out the window
    await asyncio.sleep(2 * GATHER_LIMITS.coalesce_s)  # a later timer: runs after the gather's
    assert sink.now[1:] == [{"type": "text_delta", "run_id": "run_1", "delta": "t1 t2 t3 t4 ", "seq": 2}]
    assert not sink.awaited and sink.cursor == session.seq == 2
    await session.close()


async def test_a_pin_taken_while_deltas_gather_holds_them_until_its_release() -> None:
    session, sink = attached(True, GATHER_LIMITS)
    for event in separate(0, 3):  # other runs: never merged
        session.emit(event)
    await session.flush(timeout=5.0)
    assert session.seq == 3  # the window is full
    await asyncio.sleep(2 * GATHER_LIMITS.coalesce_s)  # the next delta is not a fast producer's
    gathering(session, sink, 4)  # t0 is seq 4, evicting seq 1
    assert session.seq == 4
    session.pin(2)  # a resume after last_seq 1, accepted: seq 5 would evict seq 2
    await asyncio.sleep(2 * GATHER_LIMITS.coalesce_s)  # the window ends under the pin
    assert session.seq == 4 and session.oldest_kept_seq == 2 and len(sink.now) == 4
    session.release(2)
    await session.flush(timeout=5.0)
    received = [(e["seq"], e["delta"]) for e in sink.now[3:] + sink.awaited]
    assert received == [(4, "t0 "), (5, "t1 t2 t3 ")]
    await session.close()


async def test_a_closed_session_leaves_no_gather_timer_behind() -> None:
    session = new_session(replace(GATHER_LIMITS, coalesce_s=600.0))
    sink = RecordingSink(ready=True)
    session.attach(sink)
    gathering(session, sink, 3)
    await session.close()
    gone = weakref.ref(session)
    del session
    gc.collect()
    assert gone() is None  # no timer of the loop holds it (for coalesce_s)


# --- the outbox bound in bytes: each queued delta weighs its pending_weight (ASP-LIM-005) ---------


class BlockedAfterOneSink(BlockedSink):
    """A connection that takes one awaited send, then never another."""

    async def send_text(self, text: str) -> None:
        if self.awaited:
            await super().send_text(text)
        self.awaited.append(json.loads(text))


async def test_a_blocked_connection_is_closed_at_the_delta_whose_pending_weight_crosses_the_bytes_bound() -> (
    None
):
    """ASP-LIM-005. The session counts each queued event's sizing.pending_weight (a delta merged into
    the one queued before it adds its text alone: they leave as one event) and uncounts it when it
    sends it: the 4004 comes at the very delta whose weight, summed, crosses max_pending_bytes, after
    a burst that merged while the connection took its first frame (so an accounting that drifts
    either way fails here)."""
    limits = replace(LIMITS, max_pending_bytes=250, max_coalesced_chars=100_000)
    session = new_session(limits)
    sink = BlockedAfterOneSink()
    session.attach(sink)
    burst = [{"type": "text_delta", "run_id": "run_1", "delta": "é" * (n % 7) + f"t{n} "} for n in range(60)]
    for event in burst[:20]:  # the first leaves alone, the others merged behind it (seq 2, hanging)
        session.emit(event)
    await settle()
    assert session.seq == 2 and session.attached
    weight = 0
    for n, event in enumerate(burst[20:]):
        weight += pending_weight(event, limits.max_event_bytes) if n == 0 else len(event["delta"])
        session.emit(event)
        assert session.attached == (weight <= limits.max_pending_bytes), n
        if not session.attached:
            break
    assert weight > limits.max_pending_bytes
    await settle()
    assert sink.closed == [4004]
    await session.close()
