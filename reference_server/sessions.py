"""Sessions: the sequenced event stream of one user's conversation, outliving its connection.

Events are sequenced and written in order by one writer at a time: the emitting call while the
connection takes frames at once, a loop timer ending a fast producer's coalescing window, else one
pump task per session, running while there is something to deliver. Seq is assigned at the moment
an event is sent, so consecutive text deltas that piled up (gathered, or while the socket was
blocked) are merged into one event first (ASP-LIM-006) without leaving gaps. Every sequenced
event is kept in a bounded replay buffer for resume (ASP-RES-001).
A connection that stops reading is detached and closed with 4004 (ASP-LIM-005): the pump never
waits on it longer than send_timeout, and its outbox never holds more than max_pending_events
events or max_pending_bytes bytes. The replay buffer keeps `replay_window` events, a count the
hub lowers so that as many events of max_event_bytes fit in max_replay_bytes
(sizing.replay_capacity): its memory is bounded in bytes too. No event leaves larger than
max_event_bytes (ASP-LIM-011): the pump splits or shortens it first (protocol/sizing).

A resume is decided on the replay buffer as it is then (ASP-RES-001/003); the resuming connection
attaches only after the switch (a database write, the old session's flush). The endpoint pins the
session at the first event to replay in the same step as the decision, and the session sequences
nothing that would evict a pinned event until the connection attaches (or the resume fails and
releases it): events wait in the outbox meanwhile, so the decision still holds when it is acted on.

A failure inside the pump ends visibly: the connection is closed with 1011 and the session can no
longer be resumed; it never leaves a live, silent connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from reference_server.logs import get_logger
from reference_server.protocol.connection import CloseReason, SessionState
from reference_server.protocol.events import COALESCABLE, Event
from reference_server.protocol.sizing import SEQ_ROOM, fit, outbox_overflow, pending_weight
from reference_server.protocol.wire import encode

log = get_logger("sessions")


class SinkClosed(Exception):
    """The connection is gone; nothing more can be sent on it."""


class Journal(Protocol):
    """Where a session shared by several processes writes its sequenced events (a Redis Stream)."""

    def append(self, seq: int, text: str) -> None:
        """Record the event `seq` (its JSON text); must not block: it is called per event."""
        ...


class Sink(Protocol):
    """A connection as a session sees it."""

    cursor: int

    async def send_text(self, text: str) -> None: ...

    def send_now(self, text: str) -> bool:
        """Write `text` at once if the connection can take it without waiting; False when it
        wrote nothing (send_text must be awaited). Raises SinkClosed when the connection is gone."""
        ...

    async def close(self, code: int, reason: str = "") -> None: ...


@dataclass(frozen=True)
class DeliveryLimits:
    replay_window: int
    send_timeout_s: float
    max_pending_events: int
    max_coalesced_chars: int
    max_event_bytes: int
    coalesce_s: float = 0.0  # longest a delta waits for more when the producer outruns the socket
    max_pending_bytes: int = 8 * 1024 * 1024  # bytes queued for one connection; beyond, 4004


def new_session_id() -> str:
    """At least 96 bits from the OS's cryptographic source (ASP-SEC-002); here 144."""
    return "ses_" + secrets.token_urlsafe(18)


class Session:
    """One session's delivery: sequencing, coalescing, the replay buffer and the pump.

    `state` is the session's protocol state, written only by the decision core.
    """

    def __init__(
        self,
        *,
        user_id: str,
        conversation_id: str,
        capabilities: list[str],
        limits: DeliveryLimits,
        session_id: str | None = None,
    ) -> None:
        self.id = session_id or new_session_id()
        self.user_id = user_id
        self.conversation_id = conversation_id
        self.capabilities = capabilities
        self.limits = limits
        self.state = SessionState(session_id=self.id, conversation_id=conversation_id)
        self.seq = 0
        self.closed = False
        self.failed = False  # the pump failed: the session cannot be resumed
        self._listeners: set[Callable[[], None]] = set()
        self.detached_at: float | None = time.monotonic()
        # The texts of the last events, the newest of seq `self.seq`: plain strings, which the cyclic
        # garbage collector never scans (a tuple per event would be, once per full collection).
        self._buffer: deque[str] = deque(maxlen=max(1, limits.replay_window))
        self._outbox: deque[Event] = deque()
        self._pending_bytes = 0  # pending_weight of the events in the outbox
        # The last outbox delta while the deltas queued behind it merge into it as they come (an
        # outbox holds the events it will send, so its bound counts those, not the deltas a gather
        # waits for), and its parts, joined once by _close_tail.
        self._tail: Event | None = None
        self._tail_parts: list[str] = []
        self._tail_chars = 0
        self._loop = asyncio.get_running_loop()
        self._last_delta_at = 0.0  # when the previous delta was queued
        self._fast_producer = False  # the last two deltas came closer than a quarter window
        self._head_since = 0.0  # when the oldest queued event was queued
        self._clock = self._loop.time
        self._fast_gap = limits.coalesce_s / 4  # deltas closer than this: a fast producer
        # Deltas of a fast producer gathering for coalesce_s with no pump task: a loop timer ends the
        # gather (`_end_gather`), so a batch costs no task and no task wake-up.
        self._gather_timer: asyncio.TimerHandle | None = None
        self._sink: Sink | None = None
        # The pump runs while there is something to deliver and ends when there is not, so an idle
        # session holds no task (memory per idle connection).
        self._pump: asyncio.Task[None] | None = None
        self._delivering_now = False  # _deliver_now is on the stack (it never runs twice at once)
        # First seqs of accepted resumes whose connection has not attached yet (`pin`), and what the
        # pump awaits while a pin holds the outbox back.
        self._pins: list[int] = []
        self._unpinned: asyncio.Future[None] | None = None
        self._relayed: deque[tuple[int, str]] = deque()  # events of a mirrored session held by a pin
        self._relayed_bytes = 0
        # Shared sessions (reference_server.redis_sessions): where sequenced events are also written,
        # and, while another process sequences this session (it runs its run), where events go instead.
        self.journal: Journal | None = None
        self.forward: Callable[[Event], None] | None = None

    # --- producing ------------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Queue an event; the pump sequences and sends it."""
        if self.closed:
            return
        if self.forward is not None:  # sequenced by the process that holds the session (relayed back)
            self.forward(event)
            return
        outbox = self._outbox
        kind = event["type"]
        if kind in COALESCABLE:
            now = self._clock()
            self._fast_producer = now - self._last_delta_at < self._fast_gap
            self._last_delta_at = now
            if not outbox:
                self._head_since = now
            elif self._merged(outbox[-1], event):
                return
        else:
            if kind == "run_started":
                self._last_delta_at = 0.0  # a run's first delta always leaves at once (TTFT)
            if not outbox:
                self._head_since = self._clock()
        outbox.append(event)
        limits = self.limits
        self._pending_bytes += pending_weight(event, limits.max_event_bytes)
        # While deltas gather (a timer) or the pump runs, the event waits for them: nothing to do.
        if self._pump is None and self._gather_timer is None and not self._deliver_now():
            self._wake()
        self._bound_outbox()

    def _merged(self, tail: Event, delta: Event) -> bool:
        """Merge `delta` into the outbox's last event when that is a delta of the same run and kind
        with room for it (max_coalesced_chars), as _coalesce would merge them when sent. Returns
        whether it did. The outbox bound (ASP-LIM-005) then counts events to be sent, not deltas
        waiting to be merged: a client reading at once was closed 4004 with max_pending_events 10
        when a fast burst gathered 11 deltas in one coalescing window."""
        if tail["type"] != delta["type"] or tail["run_id"] != delta["run_id"]:
            return False
        if tail is not self._tail:
            self._close_tail()
            self._tail, self._tail_parts, self._tail_chars = tail, [tail["delta"]], len(tail["delta"])
        text = delta["delta"]
        if self._tail_chars + len(text) > self.limits.max_coalesced_chars:
            return False
        self._tail_parts.append(text)
        self._tail_chars += len(text)
        self._pending_bytes += len(text)  # the merged delta's pending_weight grows by its text
        self._bound_outbox()
        return True

    def _bound_outbox(self) -> None:
        """Close the connection 4004 when what waits for it is over the outbox bound (ASP-LIM-005);
        events wait for a resume's pins as for a connection."""
        if self._sink is not None or self._pins:
            limits = self.limits
            why = outbox_overflow(
                len(self._outbox), self._pending_bytes, limits.max_pending_events, limits.max_pending_bytes
            )
            if why is not None:
                self._overflowed(why)

    def _close_tail(self) -> None:
        """Join the parts of the merging tail into its delta: it is sequenced, or another event
        follows it."""
        tail = self._tail
        if tail is not None:
            if len(self._tail_parts) > 1:
                tail["delta"] = "".join(self._tail_parts)
            self._tail, self._tail_parts = None, []

    def relay(self, seq: int, text: str) -> None:
        """An event another process sequenced for this session: kept for replay and delivered.
        It waits in order, as an outbox event would, while keeping it would evict an event a pin
        holds (a resume of a mirrored session, before its connection attaches) or one the attached
        connection has not been sent yet (a batch, or a burst faster than the socket is written);
        the pump keeps it once it can no longer evict one, and sends it. What waits is bounded as
        an outbox is (ASP-LIM-005): beyond, the pins are given up and the connection closed 4004."""
        newest = self._relayed[-1][0] if self._relayed else self.seq
        if self.closed or seq <= newest:
            return
        if self._relayed or self._relay_held():
            self._relayed.append((seq, text))
            self._relayed_bytes += len(text)
            limits = self.limits
            why = outbox_overflow(
                len(self._relayed), self._relayed_bytes, limits.max_pending_events, limits.max_pending_bytes
            )
            if why is not None:
                self._overflowed(why)
            self._wake()
            return
        self._keep_relayed(seq, text)
        self._wake()

    def _overflowed(self, why: str) -> None:
        """What waits is over the outbox bound (ASP-LIM-005): the pins are given up and the
        connection is closed 4004 as a slow consumer."""
        if self._pins:
            self._give_up_pins(why)
        if self._sink is not None:
            self._drop_slow_consumer(self._sink, why)

    def _relay_held(self) -> bool:
        """Whether keeping the next relayed event would evict a pinned one from the replay buffer,
        or one the attached connection has not been sent yet."""
        sink = self._sink
        if sink is None:
            return self._held()
        first = min(self._pins, default=sink.cursor + 1)
        return self.seq + 1 - (self._buffer.maxlen or 1) >= min(first, sink.cursor + 1)

    def _keep_relayed(self, seq: int, text: str) -> None:
        if seq != self.seq + 1:  # a gap: texts are placed by position from the newest seq
            self._buffer.clear()
        self.seq = seq
        self._buffer.append(text)

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until every queued event has been sequenced and sent or buffered."""
        deadline = time.monotonic() + timeout
        while (
            self._outbox or self._relayed or (self._sink is not None and self._sink.cursor < self.seq)
        ) and not self.closed:
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.002)

    # --- connections ------------------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        return self._sink is not None

    def attach(self, sink: Sink, *, after_seq: int | None = None) -> None:
        """Deliver to `sink` from now on: events after `after_seq` (a replay), or only new ones.
        A replay releases the pin its resume took (`pin(after_seq + 1)`)."""
        sink.cursor = self.seq if after_seq is None else after_seq
        self._sink = sink
        self.detached_at = None
        if after_seq is not None and after_seq + 1 in self._pins:
            self.release(after_seq + 1)
        self._unpin()  # a pump waiting for a release sees the connection (another pin may still hold)
        if (
            sink.cursor < self.seq or self._outbox or self._relayed
        ):  # else no pump task for nothing to deliver
            self._wake()

    def detach(self, sink: Sink) -> None:
        if self._sink is sink:
            self._sink = None
            self.detached_at = time.monotonic()

    # --- pins: a resume accepted, its connection not attached yet --------------------------------

    def pin(self, seq: int) -> None:
        """Keep the event `seq` (and those after it) in the replay buffer: a resume from `seq` was
        accepted. Taken in the same step as the decision (no await between them); released by
        `attach` with `after_seq == seq - 1`, else by `release`, which the resume must call on every
        other path (a pin that outlived its resume would hold the session's events back for good).

        Meanwhile events wait in the outbox instead of evicting `seq`. The switch that holds the pin
        is short (a database write, then the old session's flush, at most its timeout), but a write
        can hang: the outbox is then bounded as a connection's is (max_pending_events and
        max_pending_bytes, ASP-LIM-005); beyond, the pins are given up and the resumed connection
        is closed 4004 as a slow consumer once it attaches."""
        self._pins.append(seq)

    def release(self, seq: int) -> None:
        """Drop one pin at `seq` (nothing when there is none); the outbox drains again."""
        with contextlib.suppress(ValueError):
            self._pins.remove(seq)
        if not self._held():
            self._unpin()
            if self._relayed:
                self._wake()

    def release_all(self) -> None:
        """Drop every pin at once: the session leaves this process (handed over to another, see
        reference_server.redis_sessions), so no resume can attach to it here any more. What the pins
        held back (in the outbox, or relayed) is sequenced and kept now, to be written before the
        session goes, instead of being closed with it. Nothing when no pin is held."""
        if not self._pins:
            return
        self._pins.clear()
        self._unpin()
        self._wake()

    @property
    def pinned(self) -> bool:
        return bool(self._pins)

    def _held(self) -> bool:
        """Whether sequencing the next event would evict a pinned one from the replay buffer."""
        if not self._pins:
            return False
        maxlen = self._buffer.maxlen or 1
        return self.seq + 1 - maxlen >= min(self._pins)

    def _give_up_pins(self, why: str) -> None:
        log.warning(
            "a resume's pinned events overflowed (%s): no longer held",
            why,
            extra={"asp": {"session": self.id, "user": self.user_id}},
        )
        self._pins.clear()
        self._unpin()
        self._wake()

    def _unpin(self) -> None:
        waiting, self._unpinned = self._unpinned, None
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    @property
    def oldest_kept_seq(self) -> int | None:
        """Seq of the oldest event still kept for replay (ASP-RES-003); None when none is."""
        if self.limits.replay_window == 0 or not self._buffer:
            return None
        return self.seq - len(self._buffer) + 1

    # --- listeners: connections carrying this session, told when its run ends -----------------------

    def listen(self, callback: Callable[[], None]) -> None:
        self._listeners.add(callback)

    def unlisten(self, callback: Callable[[], None]) -> None:
        self._listeners.discard(callback)

    def notify(self) -> None:
        for callback in list(self._listeners):
            callback()

    # --- the pump ---------------------------------------------------------------------------------

    def _wake(self) -> None:
        """Start the pump unless it runs (it then sees the new work before it ends)."""
        if self._pump is None and not self.closed:
            self._pump = self._loop.create_task(self._run_pump(), name=f"pump-{self.id}")

    def _deliver_now(self, gathered: bool = False) -> bool:
        """The pump's work done by the producer, for as long as nothing has to wait: an event of a
        paced stream leaves the moment it is produced, with no task and no timer. Deltas of a fast
        producer gather first: a loop timer is set for the end of the coalescing window, which
        calls this again with `gathered` (the window is over: the outbox leaves, merged). Returns
        False when what is left is the pump's: a connection that cannot take a frame at once (a
        blocked socket, or no fast path), no connection, a replay gap, a pin that holds the outbox
        or relayed events waiting ahead of it."""
        sink = self._sink
        if sink is None or self.closed or self._delivering_now:
            return False
        self._delivering_now = True
        try:
            while not self.closed and self._sink is sink:
                if sink.cursor < self.seq:
                    entry = self._buffered(sink.cursor + 1)
                    if entry is None:
                        return False
                    seq, text = entry
                elif self._outbox:
                    if self._held() or self._relayed:  # the pump's: see there
                        return False
                    if not gathered and self._must_gather():
                        if self._gather_timer is None:
                            when = self._head_since + self.limits.coalesce_s
                            self._gather_timer = self._loop.call_at(when, self._end_gather)
                        return True  # the timer's
                    seq, text = self._sequence_next()  # kept for replay: the pump sends it if not now
                else:
                    return True
                if not sink.send_now(text):
                    return False
                sink.cursor = seq
            return self.closed
        except SinkClosed:
            self.detach(sink)
            return False  # the pump sequences what is left into the replay buffer
        except Exception:
            context = {"asp": {"session": self.id, "user": self.user_id}}
            log.exception("session delivery failed", extra=context)
            self._fail()
            return True
        finally:
            self._delivering_now = False

    def _end_gather(self) -> None:
        """The coalescing window of the deltas gathering is over: send them as one event, unless
        the pump runs (it gathers on its own) or something waits that is the pump's (a pin: the
        pump waits for its release)."""
        self._gather_timer = None
        if self._pump is None and not self._deliver_now(gathered=True):
            self._wake()

    async def _run_pump(self) -> None:
        try:
            await self._pump_until_idle()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("session pump failed", extra={"asp": {"session": self.id, "user": self.user_id}})
            self._fail()
        finally:
            self._pump = None

    def _fail(self) -> None:
        """The pump cannot go on: close the connection 1011 rather than leave it silent."""
        self.failed = True
        self.closed = True
        sink = self._sink
        self._sink = None
        if sink is not None:
            reason = CloseReason.SERVER_FAULT
            spawn(sink.close(reason.code, "internal error"))

    async def _pump_until_idle(self) -> None:
        while not self.closed:
            sink = self._sink
            if sink is not None and sink.cursor < self.seq:
                entry = self._buffered(sink.cursor + 1)
                if entry is None:
                    self._drop_slow_consumer(sink, "fell out of the replay window")
                    continue
                await self._deliver(sink, *entry)
            elif self._relayed:  # a mirrored session's held events: kept one at a time, then sent
                if self._relay_held():  # a pin (the connection is caught up here: never its cursor)
                    self._unpinned = self._loop.create_future()
                    await self._unpinned
                    continue
                seq, text = self._relayed.popleft()
                self._relayed_bytes -= len(text)
                self._keep_relayed(seq, text)
            elif self._outbox:
                if self._held():  # a resume's pinned events would be evicted: wait for its release
                    self._unpinned = self._loop.create_future()
                    await self._unpinned
                    continue
                await self._gather_fast_deltas()
                if self._held():  # pinned while the deltas gathered
                    continue
                seq, text = self._sequence_next()
                if sink is not None:
                    await self._deliver(sink, seq, text)
            else:
                return

    def _must_gather(self) -> bool:
        """Adaptive coalescing: deltas arrive faster than a quarter of the coalescing window (an
        instant model), so the head of the outbox waits for more. A paced stream, and the first
        delta of every run, never wait."""
        return bool(self._fast_producer and self.limits.coalesce_s and self._outbox[0]["type"] in COALESCABLE)

    async def _gather_fast_deltas(self) -> None:
        """Let fast deltas gather for at most the coalescing window, then send them as one event."""
        if not self._must_gather():
            return
        wait = self._head_since + self.limits.coalesce_s - self._loop.time()
        if wait > 0:
            await asyncio.sleep(wait)

    def _sequence_next(self) -> tuple[int, str]:
        self._close_tail()
        event = self._outbox.popleft()
        self._pending_bytes -= pending_weight(event, self.limits.max_event_bytes)
        if event["type"] in COALESCABLE:
            event = self._coalesce(event)
        text = encode(event)
        room = self.limits.max_event_bytes - SEQ_ROOM
        if len(text) * 4 > room and len(text.encode()) > room:
            first, *rest = fit(event, self.limits.max_event_bytes)
            self._outbox.extendleft(reversed(rest))
            self._pending_bytes += sum(pending_weight(piece, self.limits.max_event_bytes) for piece in rest)
            event, text = first, encode(first)
        self.seq += 1
        event["seq"] = self.seq
        text = text[:-1] + f',"seq":{self.seq}}}'  # the event's JSON object with seq appended
        self._buffer.append(text)
        if self.journal is not None:
            self.journal.append(self.seq, text)
        return self.seq, text

    def _coalesce(self, first: Event) -> Event:
        """Merge the deltas of the same run and kind that queued up behind `first`, while the merged
        delta stays within max_coalesced_chars (a delta longer alone is left as it is)."""
        parts = [first["delta"]]
        size = len(first["delta"])
        while self._outbox:
            following = self._outbox[0]
            if following["type"] != first["type"] or following["run_id"] != first["run_id"]:
                break
            if size + len(following["delta"]) > self.limits.max_coalesced_chars:
                break
            self._outbox.popleft()
            self._pending_bytes -= pending_weight(following, self.limits.max_event_bytes)
            parts.append(following["delta"])
            size += len(parts[-1])
        return first if len(parts) == 1 else {**first, "delta": "".join(parts)}

    def _buffered(self, seq: int) -> tuple[int, str] | None:
        first = self.seq - len(self._buffer) + 1
        if not self._buffer or seq < first or seq > self.seq:
            return None
        return seq, self._buffer[seq - first]

    async def _deliver(self, sink: Sink, seq: int, text: str) -> None:
        """Send one event from the pump: written at once when the connection can take it (no timer,
        no ASGI message), else awaited for at most send_timeout_s, then the consumer is dropped."""
        try:
            if not sink.send_now(text):
                async with asyncio.timeout(self.limits.send_timeout_s):  # inline: wait_for adds a task hop
                    await sink.send_text(text)
        except TimeoutError:
            self._drop_slow_consumer(sink, f"send blocked for {self.limits.send_timeout_s:.1f}s")
            return
        except SinkClosed:
            self.detach(sink)
            return
        if self._sink is sink:
            sink.cursor = seq

    def _drop_slow_consumer(self, sink: Sink, why: str) -> None:
        if self._sink is not sink:
            return  # already detached (and being closed) for another reason
        log.warning(
            "closing slow consumer: %s", why, extra={"asp": {"session": self.id, "user": self.user_id}}
        )
        self.detach(sink)
        spawn(sink.close(CloseReason.SLOW_CONSUMER.code, "slow consumer"))

    async def close(self) -> None:
        self.closed = True
        if self._gather_timer is not None:
            self._gather_timer.cancel()
            self._gather_timer = None
        pump = self._pump
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump


_background_tasks: set[asyncio.Task[Any]] = set()


SPAWN_TIMEOUT_S = 5.0  # longest a spawned coroutine runs before it is cancelled


def spawn(awaitable: Awaitable[Any]) -> asyncio.Task[None]:
    """Run a best-effort coroutine without blocking the caller, keeping a reference until done.

    The coroutine is cancelled after SPAWN_TIMEOUT_S and its exceptions are swallowed, so the
    returned task always ends within that time without raising (unless it is itself cancelled):
    a caller that must not finish before the work is done can await it without risking a hang."""

    async def runner() -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(awaitable, SPAWN_TIMEOUT_S)

    task = asyncio.create_task(runner())
    _background_tasks.add(task)
    task.add_done_callback(_background_tasks.discard)
    return task


@dataclass
class SessionStore:
    """Live and recently detached sessions; expired ones are swept (ASP-RES-003)."""

    ttl_s: float
    sessions: dict[str, Session] = field(default_factory=dict)

    def add(self, session: Session) -> None:
        self.sessions[session.id] = session

    def discard(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    def get(self, session_id: str) -> Session | None:
        session = self.sessions.get(session_id)
        if session is not None and self._expired(session, time.monotonic()):
            return None
        return session

    def _expired(self, session: Session, now: float) -> bool:
        return (
            session.detached_at is not None
            and session.state.run is None
            and not session.pinned
            and now - session.detached_at > self.ttl_s
        )

    async def sweep(self) -> None:
        now = time.monotonic()
        for session in [s for s in self.sessions.values() if self._expired(s, now)]:
            del self.sessions[session.id]
            await session.close()

    async def close_all(self) -> None:
        for session in list(self.sessions.values()):
            await session.close()
        self.sessions.clear()
