"""A blocking ASP client on websocket-client: cooperative under Locust's gevent (asyncio is not).

It judges what it measures. A turn measures only the run that answers its own message: every
event from `run_started` to `complete` must carry that run's `run_id` (ASP-RUN-003), `seq` must
rise by exactly one (ASP-ENV-002), every frame must be a JSON event, and no gap between events may
exceed the event timeout. Anything else ends the turn as a `Failure` whose `kind` is the name it is
counted under; the caller then closes the connection, since its stream can no longer be trusted.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import websocket

from loadtests.credentials import redact
from spec import SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX

RUN_EVENTS = frozenset(
    {"text_delta", "reasoning_delta", "tool_call_delta", "tool_call", "tool_result", "error", "complete"}
)
SUCCESSFUL_FINISH = frozenset({"stop", "length"})


class Failure(Exception):
    """A connection, turn or ping that failed.

    `kind` is stable and short, the name the failure is counted under: `connect_failed`,
    `refused:CODE` (close code, or `http_STATUS` for a refused upgrade), `closed:CODE`, `stalled`,
    `bad_frame`, `seq`, `foreign_event`, `unexpected_event`, `message_refused:CODE`,
    `run_failed:REASON`. `code` is the close code or HTTP status when there is one. The message
    is for people and never holds a token.
    """

    def __init__(self, kind: str, detail: str, code: int | str | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.code = code

    @property
    def breaks_stream(self) -> bool:
        """Whether the connection can still be trusted: a run that failed by the protocol's rules
        (an error, then complete) or a refused message leaves it in order; anything else does not."""
        return self.kind.partition(":")[0] not in ("run_failed", "message_refused")


class Closed(Failure):
    """The server closed the connection (1006: it went away without a close frame)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed:{code}", f"connection closed {code} {reason}".rstrip(), code)


@dataclass
class RunMeasure:
    """One successful run as a load test sees it; times in seconds from the message sent."""

    run_id: str = ""
    ttft_s: float | None = None
    e2e_s: float = 0.0
    gaps_s: list[float] = field(default_factory=list)
    deltas: int = 0
    events: int = 0
    output_tokens: int = 0
    finish_reason: str = ""

    @property
    def tpot_s(self) -> float | None:
        """vLLM's time per output token: (E2E - TTFT) / (tokens - 1); None below two tokens."""
        if self.ttft_s is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


class SyncAspClient:
    """One ASP connection. `connect`, then `run` turns or `ping`; `close` when done.

    `event_timeout` (seconds) bounds the silence between two events (WebSocket pings do not count,
    as they do not restart a server's idle timer either, ASP-HB-005); `connect_timeout` bounds the
    handshake and the wait for `session`.
    """

    def __init__(self, url: str, token: str, *, event_timeout: float = 30.0, connect_timeout: float = 10.0):
        self.url = url
        self.token = token
        self.event_timeout = event_timeout
        self.connect_timeout = connect_timeout
        self.ws: websocket.WebSocket | None = None
        self.session: dict[str, Any] = {}
        self.last_seq = 0
        self.history_due = False  # the next event may be `history` (directly after `session`)
        self._ids = itertools.count(1)

    def connect(self) -> dict[str, Any]:
        """Open the connection and read `session`, its first event (ASP-SES-001).

        Raises Failure: `connect_failed` (no WebSocket: nothing listening, a timeout, a broken
        handshake), `refused:CODE` (a close before `session`, or `refused:http_STATUS` for an
        upgrade refused over HTTP), `bad_frame`/`seq`/`unexpected_event` (a first event that is not
        `session` with seq 1).
        """
        protocols = [SUBPROTOCOL] + ([TOKEN_SUBPROTOCOL_PREFIX + self.token] if self.token else [])
        try:
            self.ws = websocket.create_connection(
                self.url, subprotocols=protocols, timeout=self.connect_timeout, enable_multithread=False
            )
        except websocket.WebSocketBadStatusException as refused:
            status = f"http_{refused.status_code}"
            raise Failure(
                f"refused:{status}", f"upgrade refused with HTTP {refused.status_code}", status
            ) from None
        except (websocket.WebSocketException, OSError) as failed:
            detail = redact(f"no WebSocket: {type(failed).__name__}: {failed}", [self.token])
            raise Failure("connect_failed", detail) from None
        self.last_seq = 0
        try:
            event = self.next_event(self.connect_timeout)
        except Closed as closed:
            self.close()
            raise Failure(
                f"refused:{closed.code}", f"refused with close code {closed.code}", closed.code
            ) from None
        except Failure:
            self.close()
            raise
        if event["type"] != "session":
            self.close()
            raise Failure("unexpected_event", f"first event {event['type']!r}, not session")
        self.session = event
        self.history_due = True  # `history` may follow `session` directly (ASP-SES-005)
        return event

    def next_event(self, timeout: float) -> dict[str, Any]:
        """The next event, within `timeout` seconds; answers WebSocket pings on the way, and skips
        the `history` a server may send directly after `session` (ASP-SES-005: a user reconnecting
        to its conversation gets it; a turn must not fail on it).

        Raises Closed on a close frame or a lost connection, Failure `stalled` when no event came
        in time, `bad_frame` for a frame that is not a JSON object with a string `type`, `seq`
        when `seq` does not rise by exactly one.
        """
        assert self.ws is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Failure("stalled", f"no event within {timeout:g} s")
            self.ws.settimeout(remaining)
            try:
                opcode, data = self.ws.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException:
                raise Failure("stalled", f"no event within {timeout:g} s") from None
            except websocket.WebSocketConnectionClosedException:
                raise Closed(1006) from None
            except (websocket.WebSocketPayloadException, websocket.WebSocketProtocolException) as bad:
                raise Failure("bad_frame", f"unreadable frame: {bad}") from None
            except OSError:
                raise Closed(1006) from None
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                raise Closed(code, data[2:].decode(errors="replace"))
            if opcode in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG):
                continue
            event = self._event(opcode, data)
            history_due, self.history_due = self.history_due, False
            if history_due and event["type"] == "history":
                continue  # a returning user's conversation, sent once after `session`: not a run's
            return event

    def _event(self, opcode: int, data: bytes | str) -> dict[str, Any]:
        if opcode != websocket.ABNF.OPCODE_TEXT:
            raise Failure("bad_frame", "a binary frame (events are text)")
        try:
            event = json.loads(data)
        except ValueError:
            raise Failure("bad_frame", "a frame that is not JSON") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise Failure("bad_frame", "a frame that is not an event (a JSON object with a type)")
        seq = event.get("seq")
        if type(seq) is not int or seq != self.last_seq + 1:
            raise Failure("seq", f"seq {seq!r} after {self.last_seq} (ASP-ENV-002: it rises by one)")
        self.last_seq = seq
        return event

    def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        try:
            self.ws.send(json.dumps(message))
        except (websocket.WebSocketException, OSError):
            raise Closed(1006) from None

    def ping(self, ping_id: str) -> float:
        """Seconds from an application ping to its pong; Failure as `next_event`, or
        `unexpected_event` for any other event but a vendor `x-` one."""
        began = time.perf_counter()
        self.send({"type": "ping", "id": ping_id})
        while True:
            event = self.next_event(self.event_timeout)
            if event["type"] == "pong" and event.get("id") == ping_id:
                return time.perf_counter() - began
            if not event["type"].startswith("x-"):
                raise Failure("unexpected_event", f"{event['type']} while waiting for pong {ping_id}")

    def run(self, content: str) -> RunMeasure:
        """Send `content` as a message and measure the run that answers it, to its `complete`.

        Returns the measure of a successful run (complete with finish_reason stop or length).
        Raises Failure: `message_refused:CODE` (an error answering the message), `foreign_event`
        (an event of another run, or a run_started answering another message), `unexpected_event`,
        `run_failed:REASON` (the run's error code, else its finish_reason), or any failure of
        `next_event`. Vendor `x-` events are outside the run lifecycle and skipped (ASP-EXT-004).
        """
        message_id = f"load-{next(self._ids)}"
        measure = RunMeasure()
        began = time.perf_counter()
        self.send({"type": "message", "id": message_id, "content": content})
        last_delta: float | None = None
        run_error = ""
        while True:
            event = self.next_event(self.event_timeout)
            now = time.perf_counter()
            kind: str = event["type"]
            measure.events += 1
            if kind.startswith("x-"):
                continue
            if not measure.run_id:
                measure.run_id = _run_started(event, message_id)
                continue
            if "run_id" not in event:
                raise Failure("unexpected_event", f"{kind} without a run_id during run {measure.run_id}")
            if event["run_id"] != measure.run_id:
                raise Failure("foreign_event", f"{kind} of run {event['run_id']!r} during {measure.run_id!r}")
            if kind not in RUN_EVENTS:
                raise Failure("unexpected_event", f"{kind} inside run {measure.run_id}")
            if kind == "text_delta":
                delta = event.get("delta")
                if not isinstance(delta, str):
                    raise Failure("bad_frame", "a text_delta without a string delta")
                if delta:
                    if measure.ttft_s is None:
                        measure.ttft_s = now - began
                    if last_delta is not None:
                        measure.gaps_s.append(now - last_delta)
                    last_delta = now
                    measure.deltas += 1
            elif kind == "error":
                run_error = str(event.get("code"))
            elif kind == "complete":
                measure.e2e_s = now - began
                measure.finish_reason = str(event.get("finish_reason"))
                if run_error or measure.finish_reason not in SUCCESSFUL_FINISH:
                    raise Failure(
                        f"run_failed:{run_error or measure.finish_reason}",
                        f"the run ended {measure.finish_reason}"
                        + (f" after error {run_error}" if run_error else ""),
                    )
                usage = event.get("usage") or {}
                measure.output_tokens = int(usage.get("output_tokens") or measure.deltas)
                return measure

    def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):  # already closed by the server
                self.ws.close()
            self.ws = None


def _run_started(event: dict[str, Any], message_id: str) -> str:
    """The run_id of the run_started answering `message_id`; Failure for anything else."""
    kind = event["type"]
    if kind == "error" and "run_id" not in event:
        code = event.get("code")
        raise Failure(f"message_refused:{code}", f"the message was refused: {code}")
    if kind != "run_started":
        raise Failure("unexpected_event", f"{kind} before run_started")
    if event.get("message_id") != message_id:
        raise Failure("foreign_event", f"run_started answers {event.get('message_id')!r}, not {message_id!r}")
    run_id = event.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise Failure("bad_frame", "run_started without a run_id")
    return run_id
