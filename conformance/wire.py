"""An ASP client for checkers: every frame it receives goes through the oracle and the transcript.

Used by the conformance kit's cases and by the reference server's own tests, so both judge the
wire the same way (schemas + lifecycle machine) and keep the same transcript.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from spec import SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX
from spec.machine import Violation
from spec.oracle import Oracle
from spec.registry import close_code

Event = dict[str, Any]
# What the kit records when a connection ends without a close frame, and how it closes its own.
ABNORMAL = close_code("abnormal_closure")
NORMAL = close_code("normal_closure")


@dataclass
class Frame:
    """One line of a wire transcript."""

    t: float
    direction: str  # "send", "recv", "open", "close", "error"
    text: str | None = None
    code: int | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Transcript:
    started: float = field(default_factory=time.monotonic)
    frames: list[Frame] = field(default_factory=list)

    def add(self, direction: str, **values: Any) -> None:
        self.frames.append(Frame(round(time.monotonic() - self.started, 4), direction, **values))


def closure(code: int | None, reason: str) -> str:
    """How a connection ended, as a finding words it, from its close code and reason: closed with a
    code (and its reason); no close frame came (1006: the TCP connection ended without the closing
    handshake, the server dropped it or the network did); or, code None, it is still open."""
    if code is None:
        return "stayed open"
    if code == ABNORMAL:
        return f"ended without a close frame ({ABNORMAL}: dropped by the server or the network)"
    return f"closed with {code}, " + (f"reason {reason!r}" if reason else "no reason")


class Closed(Exception):
    """The server closed the connection (or it dropped); code and reason as received."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"the connection {closure(code, reason)}")
        self.code = code
        self.reason = reason


class HandshakeRefused(Exception):
    """The server answered the upgrade with an HTTP status instead of 101."""

    def __init__(self, status: int) -> None:
        super().__init__(f"handshake refused with HTTP {status}")
        self.status = status


class HandshakeBroken(Exception):
    """The server broke the WebSocket handshake off, or answered it with something that is no HTTP
    response (ASP-TRN-002): the connection ended or was garbled before any status line."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"the WebSocket handshake broke: {problem}")
        self.problem = problem


# websockets reads only HTTP/1.1 responses; an HTTP/1.0 one (Python's http.server) comes back as
# "unsupported protocol; expected HTTP/1.1: HTTP/1.0 404 File not found", a status all the same.
_OLDER_HTTP_STATUS = re.compile(r"expected HTTP/1\.1: HTTP/1\.0 ([1-5][0-9][0-9])\b")


def with_query(url: str, **params: str | None) -> str:
    parts = urlsplit(url)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = "&".join(p for p in (parts.query, extra) if p)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


KEEPALIVE_PREFIX = "kit-keepalive-"
SYNC_PREFIX = "kit-sync-"


@dataclass(frozen=True)
class _Ended:
    """Put on the queue by the reader when the connection is gone."""


_ENDED = _Ended()


class AspClient:
    """One connection, read continuously in the background.

    Use `await AspClient.open(...)`; always `await close()` (or use `async with`). Every frame is
    recorded in the transcript and judged by the oracle the moment it arrives (so `arrival()` is
    the time the frame reached the kit, not the time a case read it); `recv`/`expect` hand the
    events to the caller in arrival order. With `keepalive` (seconds) the client sends a `ping`
    whenever it has sent nothing for that long (ASP-HB-004); the pongs of those pings are judged
    but never handed to the caller.
    """

    def __init__(self, websocket: ClientConnection, transcript: Transcript, keepalive: float | None) -> None:
        self.websocket = websocket
        self.transcript = transcript
        self.oracle = Oracle()
        self.events: list[Event] = []  # events handed to the caller, in order
        self.close_code: int | None = None
        self.close_reason: str = ""
        self.last_sent = time.monotonic()
        self.round_trip: float | None = None  # seconds, of the last sync ping
        self.unanswered = False  # a ping of ours went unanswered: no sync point to wait for
        # awaited before every frame is sent (the conformance kit paces its messages with it)
        self.before_send: Callable[[str | bytes], Awaitable[None]] | None = None
        self._backlog: list[Event] = []
        self._queue: asyncio.Queue[Event | _Ended] = asyncio.Queue()
        self._arrivals: list[tuple[Event, float]] = []
        self._ended = False
        self._closing = False
        self._pings = 0
        self._reader = asyncio.create_task(self._read(), name="asp-client-reader")
        self._keepalive = (
            asyncio.create_task(self._keep_alive(keepalive), name="asp-client-keepalive")
            if keepalive
            else None
        )

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        token: str | None = None,
        token_in: str = "query",
        subprotocols: Sequence[str] | None = (SUBPROTOCOL,),
        conversation_id: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        keepalive: float | None = None,
    ) -> AspClient:
        offered = list(subprotocols or [])
        if token is not None and token_in == "subprotocol":
            offered.append(TOKEN_SUBPROTOCOL_PREFIX + token)
        target = with_query(
            url, token=token if token_in == "query" else None, conversation_id=conversation_id
        )
        transcript = Transcript()
        try:
            websocket = await connect(
                target,
                subprotocols=[Subprotocol(p) for p in offered] or None,
                additional_headers=headers,
                compression=None,
                max_size=None,
                open_timeout=timeout,
                ping_interval=None,
                close_timeout=2,
            )
        except InvalidStatus as refused:
            transcript.add("error", reason=f"HTTP {refused.response.status_code}")
            raise HandshakeRefused(refused.response.status_code) from refused
        except InvalidHandshake as broken:  # no HTTP/1.1 answer: closed, not HTTP, or an older HTTP
            cause = broken.__cause__
            older = _OLDER_HTTP_STATUS.search(str(cause)) if cause is not None else None
            if older:  # a valid HTTP/1.0 response (http.server): a refusal with its status, not garble
                status = int(older.group(1))
                transcript.add("error", reason=f"HTTP {status}")
                raise HandshakeRefused(status) from broken
            problem = f"{broken}" + (f" ({cause})" if cause is not None and str(cause) else "")
            transcript.add("error", reason=problem)
            raise HandshakeBroken(problem) from None
        transcript.add("open", reason=websocket.subprotocol or "")
        return cls(websocket, transcript, keepalive)

    async def __aenter__(self) -> AspClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def subprotocol(self) -> str | None:
        return self.websocket.subprotocol

    @property
    def violations(self) -> list[Violation]:
        return self.oracle.violations

    # --- the background reader --------------------------------------------------------------

    async def _read(self) -> None:
        while True:
            try:
                frame = await self.websocket.recv()
            except ConnectionClosed as closed:
                if not self._closing:
                    self._record_close(closed)
                break
            except Exception:  # the transport failed under us: the connection is gone
                if not self._closing:
                    self.close_code = ABNORMAL
                    self.transcript.add("close", code=ABNORMAL, reason="transport failed")
                break
            arrived = time.monotonic()
            event = take_frame(frame, self.oracle, self.transcript)
            if event is None:
                continue
            self._arrivals.append((event, arrived))
            self._queue.put_nowait(event)
        self._queue.put_nowait(_ENDED)

    async def _keep_alive(self, interval: float) -> None:
        while not self._ended and self.close_code is None and not self._closing:
            await asyncio.sleep(max(0.01, self.last_sent + interval - time.monotonic()))
            if time.monotonic() - self.last_sent >= interval and self.close_code is None:
                self._pings += 1
                try:
                    await self.send({"type": "ping", "id": f"{KEEPALIVE_PREFIX}{self._pings}"})
                except Exception:  # the connection is gone: the reader records how
                    return

    def arrival(self, event: Event) -> float | None:
        """When `event` (an object this client handed out) reached the kit, in monotonic seconds."""
        for candidate, arrived in reversed(self._arrivals):
            if candidate is event:
                return arrived
        return None

    def arrived(self, matches: Callable[[Event], bool]) -> tuple[Event, float] | None:
        """The first event that reached the kit (read by the caller or not) matching, with its
        arrival time; None when none did."""
        for event, arrived in self._arrivals:
            if matches(event):
                return event, arrived
        return None

    # --- sending and receiving ----------------------------------------------------------------

    async def send(self, message: Event | str | bytes) -> None:
        payload = json.dumps(message) if isinstance(message, dict) else message
        if self.before_send is not None:
            await self.before_send(payload)
        self.transcript.add(
            "send", text=payload if isinstance(payload, str) else f"<binary {len(payload)} bytes>"
        )
        self.last_sent = time.monotonic()
        await self.websocket.send(payload)

    async def send_text_bytes(self, payload: bytes) -> None:
        """Send `payload` as one text frame, as is: the kit's way to send text that is not UTF-8."""
        self.transcript.add("send", text=f"<text frame of {len(payload)} bytes: {payload[:80]!r}>")
        self.last_sent = time.monotonic()
        await self.websocket.send(payload, text=True)

    async def send_fragments(self, fragments: Sequence[str]) -> None:
        """Send one text message as a frame per fragment (a fragmented message, RFC 6455 5.4)."""
        whole = "".join(fragments)
        if self.before_send is not None:
            await self.before_send(whole)
        self.transcript.add("send", text=f"<{len(fragments)} fragments> {whole[:200]}")
        self.last_sent = time.monotonic()
        await self.websocket.send(list(fragments))

    async def _receive_one(self, timeout: float) -> Event:
        if self._ended and self._queue.empty():
            raise Closed(self.close_code, self.close_reason)
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            raise TimeoutError(f"nothing received within {timeout:.1f}s") from None
        if isinstance(item, _Ended):
            self._ended = True
            raise Closed(self.close_code, self.close_reason)
        self.events.append(item)
        return item

    def _record_close(self, closed: ConnectionClosed) -> None:
        if self.close_code is None:
            received = closed.rcvd
            self.close_code = received.code if received is not None else ABNORMAL
            self.close_reason = received.reason if received is not None else ""
            self.transcript.add("close", code=self.close_code, reason=self.close_reason)
            sent = closed.sent
            if sent is not None and closed.rcvd_then_sent is not True:
                # The kit's WebSocket failed the connection (1007 for a text frame that is not UTF-8,
                # 1002 for a broken frame): a fault of what the server sent, and the server's
                # close, if any, only answers the kit's.
                self.transcript.add("error", code=sent.code, reason=f"the kit closed: {sent.reason}")
                self.oracle.feed_unreadable(f"the kit's WebSocket closed with {sent.code}: {sent.reason}")
            else:
                self.oracle.feed_close(self.close_code, self.close_reason)

    async def recv(self, timeout: float = 10.0) -> Event:
        """The next event (events set aside by `expect` come first)."""
        if self._backlog:
            return self._backlog.pop(0)
        return await self._receive_one(timeout)

    async def expect(
        self, kind: str | Callable[[Event], bool], timeout: float = 10.0, *, keep_others: bool = True
    ) -> Event:
        """The first event of `kind` (or matching the predicate); others are kept for `recv`."""
        matches: Callable[[Event], bool] = (
            (lambda e: e.get("type") == kind) if isinstance(kind, str) else kind
        )
        for index, event in enumerate(self._backlog):
            if matches(event):
                return self._backlog.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"no {kind if isinstance(kind, str) else 'matching'} event within {timeout}s"
                    + passed_over(self._backlog)
                )
            try:
                event = await self._receive_one(remaining)
            except TimeoutError:
                raise TimeoutError(
                    f"no {kind if isinstance(kind, str) else 'matching'} event within {timeout:.1f}s"
                    + passed_over(self._backlog)
                ) from None
            if matches(event):
                return event
            if keep_others:
                self._backlog.append(event)

    async def collect_run(self, timeout: float = 15.0) -> list[Event]:
        """Every event from the next run_started to its complete, inclusive."""
        started = await self.expect("run_started", timeout)
        run_id = started.get("run_id")
        collected = [started]
        deadline = time.monotonic() + timeout
        while True:
            event = await self.expect(
                lambda e: e.get("run_id") == run_id, max(0.01, deadline - time.monotonic())
            )
            collected.append(event)
            if event.get("type") == "complete":
                return collected

    async def sync(self, timeout: float = 10.0) -> bool:
        """Send a ping and read on until its pong: every event the server sent before it is then in.

        Events read on the way are kept for `recv`; the pong itself is not. False when no pong came
        within `timeout` seconds or the connection closed (the events that did come are kept); after
        a ping went unanswered, False at once.
        """
        if self.unanswered:
            return False
        self._pings += 1
        ping_id = f"{SYNC_PREFIX}{self._pings}"
        sent = time.monotonic()
        try:
            await self.send({"type": "ping", "id": ping_id})
            await self.expect(lambda e: e.get("type") == "pong" and e.get("id") == ping_id, timeout)
        except TimeoutError:
            self.unanswered = True
            return False
        except (Closed, ConnectionClosed):
            return False
        self.round_trip = time.monotonic() - sent
        self.events = [e for e in self.events if not (e.get("type") == "pong" and e.get("id") == ping_id)]
        return True

    async def wait_closed(self, timeout: float = 10.0) -> int | None:
        """Read until the server closes; returns the close code."""
        deadline = time.monotonic() + timeout
        while not self._ended:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"server did not close within {timeout}s")
            try:
                event = await self._receive_one(remaining)
            except Closed:
                break
            self._backlog.append(event)
        return self.close_code

    async def close(self, code: int = NORMAL) -> None:
        self._stop_keepalive()
        if self.close_code is None:
            self._closing = True
            await self.websocket.close(code)
            self.transcript.add("close", code=code, reason="client")
            if self.close_code is None:
                self.close_code = code
        await self._stop_reader()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a killed client)."""
        self._stop_keepalive()
        self._closing = True
        transport = self.websocket.transport
        transport.abort()
        self.transcript.add("close", code=ABNORMAL, reason="client aborted")
        self.close_code = ABNORMAL

    def _stop_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None

    async def _stop_reader(self) -> None:
        if not self._reader.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._reader), 2)
            except TimeoutError:
                self._reader.cancel()


def take_frame(frame: str | bytes, oracle: Oracle, transcript: Transcript) -> Event | None:
    """The reader's work on one received frame, sans I/O: record it, judge it, shape it for cases.

    Returns the event to hand to the case: the parsed object, `{"type": "<binary>"}` for a binary
    frame, `{"type": "<unparsable>", "raw": frame}` for text that is not a JSON object; None for
    the pong of one of the kit's keepalive pings (judged, never handed out). Never raises for
    anything a server sends (conformance/fuzz.py feeds it hostile frames to prove it).
    """
    if isinstance(frame, bytes):
        transcript.add("recv", text=f"<binary {len(frame)} bytes>")
        oracle.feed_binary(frame)
        return {"type": "<binary>"}
    transcript.add("recv", text=frame)
    parsed, _ = oracle.feed_text(frame)
    event = parsed if parsed is not None else {"type": "<unparsable>", "raw": frame}
    return None if _is_keepalive_pong(event) else event


def passed_over(events: list[Event]) -> str:
    """What a wait received instead of what it awaited, for its timeout message: `""` when
    nothing, else `"; received instead: binary frame (x2), pong"` (per kind, in order)."""
    kinds: dict[str, int] = {}
    for event in events:
        kind = event.get("type")
        name = {
            "<binary>": "binary frame",
            "<unparsable>": "frame the kit cannot parse as a JSON object",
        }.get(str(kind), f"{kind}" if isinstance(kind, str) else "event without a string type")
        kinds[name] = kinds.get(name, 0) + 1
    if not kinds:
        return ""
    return "; received instead: " + ", ".join(
        name + (f" (x{count})" if count > 1 else "") for name, count in kinds.items()
    )


def _is_keepalive_pong(event: Event) -> bool:
    ping_id = event.get("id")
    return event.get("type") == "pong" and isinstance(ping_id, str) and ping_id.startswith(KEEPALIVE_PREFIX)
