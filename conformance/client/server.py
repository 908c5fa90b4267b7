"""The scripted ASP server of `asp check-client`: it accepts the client under test on 127.0.0.1
and does exactly what a scenario tells it, including what a correct server never does (drop
mid-run, skip a seq, replay events twice, fall silent).

It decides nothing by itself beyond the wire's mechanics: it selects `asp.v1` when offered (as
1.1 servers do, ASP-VER-001), answers `ping` with `pong` while a peer's `answer_pings` is on, and
records every frame both ways with its time. Scenarios (conformance/client/cases/) make the
protocol decisions and judge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from conformance.wire import ABNORMAL, Transcript
from spec import SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX, jsondepth
from spec.schemas import check_client_message

Event = dict[str, Any]


def new_id(prefix: str) -> str:
    """An unguessable identifier (96 bits, ASP-SEC-002) with a readable prefix."""
    return f"{prefix}_{secrets.token_urlsafe(12)}"


@dataclass
class KitSession:
    """One session the kit plays: every event it numbered, sent or not, so a resume can replay them.

    Sessions outlive connections: a resumed connection carries an older session's events.
    """

    session_id: str = field(default_factory=lambda: new_id("sess"))
    conversation_id: str = field(default_factory=lambda: new_id("conv"))
    events: list[Event] = field(default_factory=list)

    @property
    def last_seq(self) -> int:
        return int(self.events[-1]["seq"]) if self.events else 0

    def number(self, event: Event) -> Event:
        """`event` with the next seq of this session, kept for replays."""
        numbered = {**event, "seq": self.last_seq + 1}
        self.events.append(numbered)
        return numbered

    def after(self, seq: int) -> list[Event]:
        """The events numbered after `seq`, in order (what a resume from `seq` replays)."""
        return [e for e in self.events if int(e["seq"]) > seq]


@dataclass
class Peer:
    """One connection attempt of the client under test, from its HTTP request on.

    `arrived` and `ended_at` are `time.monotonic()` values: when the upgrade request arrived and
    when the kit closed, aborted or refused the connection (None while it has not). `problems`
    lists frames that were not one JSON object in a text frame (ASP-TRN-003); `schema_problems`
    the JSON objects that do not validate against client-message.json (ASP-ENV-004).
    """

    index: int
    arrived: float
    path: str
    query: dict[str, list[str]]
    offered: list[str]
    origin: str | None
    transcript: Transcript
    refused: int | None = None  # the HTTP status the kit answered instead of 101
    websocket: ServerConnection | None = None
    session: KitSession | None = None
    answer_pings: bool = True
    ended_at: float | None = None
    last_sent_at: float | None = None
    client_close: int | None = None  # the close code the client sent, when it closed first
    client_closed_at: float | None = None
    messages: list[tuple[float, Event]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    schema_problems: list[str] = field(default_factory=list)
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    # Held by `send` and by a scenario sending a batch with `transmit` (a replay), so that a pong
    # is never numbered and sent in the middle of one.
    exclusive: asyncio.Lock = field(default_factory=asyncio.Lock)
    _arrivals: asyncio.Event = field(default_factory=asyncio.Event)

    # --- what the client presented ----------------------------------------------------------------

    @property
    def subprotocol_token(self) -> str | None:
        for offer in self.offered:
            if offer.startswith(TOKEN_SUBPROTOCOL_PREFIX):
                return offer.removeprefix(TOKEN_SUBPROTOCOL_PREFIX)
        return None

    @property
    def query_token(self) -> str | None:
        values = self.query.get("token")
        return values[0] if values else None

    # --- sending -------------------------------------------------------------------------------------

    async def send(self, event: Event) -> Event:
        """Number `event` in this connection's session and send it; returns it as sent."""
        if self.session is None:
            raise RuntimeError("send() before the peer has a session")
        async with self.exclusive:
            numbered = self.session.number(event)
            await self.transmit(numbered)
        return numbered

    async def transmit(self, event: Event) -> None:
        """Send `event` exactly as given (replays, duplicates, gaps); hold `exclusive` around a
        batch. A gone connection is ignored: what the client does about it is the scenario's to judge."""
        text = json.dumps(event, separators=(",", ":"))
        self.transcript.add("send", text=text)
        self.last_sent_at = time.monotonic()
        if self.websocket is None:
            return
        with contextlib.suppress(ConnectionClosed):
            await self.websocket.send(text)

    async def close(self, code: int, reason: str = "") -> float:
        """Send a close frame with `code`; returns when it was sent (monotonic). The closing
        handshake finishes in the background."""
        self.ended_at = time.monotonic()
        self.transcript.add("close", code=code, reason=f"kit: {reason}" if reason else "kit")
        if self.websocket is not None:
            asyncio.get_running_loop().create_task(self._close(code, reason))
        return self.ended_at

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            assert self.websocket is not None
            await self.websocket.close(code, reason)

    def abort(self) -> float:
        """Drop the TCP connection without a close frame (the client sees 1006); returns when."""
        self.ended_at = time.monotonic()
        self.transcript.add("close", code=ABNORMAL, reason="kit: dropped the TCP connection")
        if self.websocket is not None:
            self.websocket.transport.abort()
        return self.ended_at

    # --- receiving -----------------------------------------------------------------------------------

    async def next_message(self, types: tuple[str, ...], timeout: float, after: int = 0) -> Event | None:
        """The first client message (from the `after`-th on) whose type is in `types`, waiting up
        to `timeout` seconds; None when none came (or the connection ended first)."""
        deadline = time.monotonic() + timeout
        seen = after
        while True:
            for _, message in self.messages[seen:]:
                seen += 1
                if message.get("type") in types:
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.gone.is_set() and seen == len(self.messages)):
                return None
            self._arrivals.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrivals.wait(), remaining)

    def sent_of(self, kind: str) -> list[Event]:
        """Every client message of type `kind` received so far."""
        return [m for _, m in self.messages if m.get("type") == kind]

    async def _read(self) -> None:
        assert self.websocket is not None
        try:
            async for frame in self.websocket:
                if isinstance(frame, bytes):
                    self.transcript.add("recv", text=f"<binary {len(frame)} bytes>")
                    self.problems.append(f"a binary frame of {len(frame)} bytes")
                    continue
                self.transcript.add("recv", text=frame)
                try:
                    message = jsondepth.loads(frame)
                except (ValueError, RecursionError):
                    self.problems.append(f"a text frame that is not one JSON value: {frame[:80]!r}")
                    continue
                if not isinstance(message, dict):
                    self.problems.append(f"a JSON {type(message).__name__}, not an object: {frame[:80]!r}")
                    continue
                self.messages.append((time.monotonic(), message))
                kind = message.get("type")
                self.schema_problems.extend(
                    f"{kind if isinstance(kind, str) else 'a message'}: {problem}"
                    for problem in check_client_message(message)
                )
                self._arrivals.set()
                if message.get("type") == "ping" and self.answer_pings and self.session is not None:
                    pong: Event = {"type": "pong"}
                    if isinstance(message.get("id"), str):
                        pong["id"] = message["id"]
                    await self.send(pong)
        except ConnectionClosed:
            pass
        finally:
            received = self.websocket.protocol.close_rcvd if self.websocket is not None else None
            if self.ended_at is None:
                self.client_closed_at = time.monotonic()
                self.client_close = received.code if received is not None else ABNORMAL
                reason = received.reason if received is not None else "dropped"
                self.transcript.add("close", code=self.client_close, reason=f"client: {reason}")
            self.gone.set()
            self._arrivals.set()


class ScriptedServer:
    """A WebSocket server on 127.0.0.1 (free port) handing every connection attempt to the scenario.

    Use `url = await server.start()`, then `await server.next_peer(timeout)` for each attempt in
    order (refused ones included), and `await server.stop()` at the end. `refuse(status)` makes
    the next attempt get that HTTP status instead of 101.
    """

    def __init__(self, started: float) -> None:
        self.started = started
        self.peers: list[Peer] = []
        self.conversations: set[str] = set()  # the conversation ids the scenario's sessions bound
        self._queue: asyncio.Queue[Peer] = asyncio.Queue()
        self._server: Server | None = None
        self._refusals: list[int] = []
        self._by_connection: dict[int, Peer] = {}

    async def start(self) -> str:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._request,
            select_subprotocol=self._select,
            ping_interval=None,
            compression=None,
            max_size=1 << 20,
            close_timeout=2,
        )
        port = self._server.sockets[0].getsockname()[1] if self._server.sockets else 0
        return f"ws://127.0.0.1:{port}/ws/chat"

    async def stop(self) -> None:
        for peer in self.peers:
            if peer.websocket is not None and not peer.gone.is_set():
                peer.websocket.transport.abort()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 3)

    def refuse(self, status: int = HTTPStatus.SERVICE_UNAVAILABLE) -> None:
        """Answer the next connection attempt with this HTTP status instead of 101."""
        self._refusals.append(int(status))

    async def next_peer(self, timeout: float) -> Peer | None:
        """The next connection attempt, waiting up to `timeout` seconds; None when none came."""
        try:
            return await asyncio.wait_for(self._queue.get(), max(0.0, timeout))
        except TimeoutError:
            return None

    def pending(self) -> int:
        """Connection attempts that arrived and no scenario has taken yet."""
        return self._queue.qsize()

    def _request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        offered = [
            value.strip()
            for header in request.headers.get_all("Sec-WebSocket-Protocol")
            for value in header.split(",")
            if value.strip()
        ]
        peer = Peer(
            index=len(self.peers) + 1,
            arrived=time.monotonic(),
            path=parts.path,
            query=parse_qs(parts.query),
            offered=offered,
            origin=request.headers.get("Origin"),
            transcript=Transcript(started=self.started),
        )
        origin = f", Origin {peer.origin}" if peer.origin else ""
        peer.transcript.add(
            "open", reason=f"attempt {peer.index}: offered {offered}, query {parts.query!r}{origin}"
        )
        self.peers.append(peer)
        if self._refusals:
            peer.refused = self._refusals.pop(0)
            peer.ended_at = time.monotonic()
            peer.transcript.add("error", reason=f"kit: refused the handshake with HTTP {peer.refused}")
            peer.gone.set()
            self._queue.put_nowait(peer)
            return connection.respond(HTTPStatus(peer.refused), "refused by the scenario\n")
        self._by_connection[id(connection)] = peer
        return None

    @staticmethod
    def _select(connection: ServerConnection, offered: Any) -> Subprotocol | None:
        return Subprotocol(SUBPROTOCOL) if SUBPROTOCOL in offered else None

    async def _handle(self, connection: ServerConnection) -> None:
        peer = self._by_connection.pop(id(connection))
        peer.websocket = connection
        reader = asyncio.get_running_loop().create_task(peer._read())
        self._queue.put_nowait(peer)
        await peer.gone.wait()
        await reader
