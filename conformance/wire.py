"""An ASP client for checkers: every frame it receives goes through the oracle and the transcript.

Used by the conformance kit's cases and by the reference server's own tests, so both judge the
wire the same way (schemas + lifecycle machine) and keep the same transcript.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from spec import SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX
from spec.machine import Violation
from spec.oracle import Oracle

Event = dict[str, Any]


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


class Closed(Exception):
    """The server closed the connection (or it dropped); code and reason as received."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection closed: {code} {reason!r}")
        self.code = code
        self.reason = reason


class HandshakeRefused(Exception):
    """The server answered the upgrade with an HTTP status instead of 101."""

    def __init__(self, status: int) -> None:
        super().__init__(f"handshake refused with HTTP {status}")
        self.status = status


def with_query(url: str, **params: str | None) -> str:
    parts = urlsplit(url)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = "&".join(p for p in (parts.query, extra) if p)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class AspClient:
    """One connection. Use `await AspClient.open(...)`; always `await close()` (or use `async with`)."""

    def __init__(self, websocket: ClientConnection, transcript: Transcript) -> None:
        self.websocket = websocket
        self.transcript = transcript
        self.oracle = Oracle()
        self.events: list[Event] = []
        self.close_code: int | None = None
        self.close_reason: str = ""
        self._backlog: list[Event] = []

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
        transcript.add("open", reason=websocket.subprotocol or "")
        return cls(websocket, transcript)

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

    async def send(self, message: Event | str | bytes) -> None:
        payload = json.dumps(message) if isinstance(message, dict) else message
        self.transcript.add(
            "send", text=payload if isinstance(payload, str) else f"<binary {len(payload)} bytes>"
        )
        await self.websocket.send(payload)

    async def _receive_one(self, timeout: float) -> Event:
        try:
            frame = await asyncio.wait_for(self.websocket.recv(), timeout)
        except ConnectionClosed as closed:
            self._record_close(closed)
            raise Closed(self.close_code, self.close_reason) from None
        if isinstance(frame, bytes):
            self.transcript.add("recv", text=f"<binary {len(frame)} bytes>")
            self.oracle.feed_binary(frame)
            return {"type": "<binary>"}
        self.transcript.add("recv", text=frame)
        event, _ = self.oracle.feed_text(frame)
        parsed = event if event is not None else {"type": "<unparsable>", "raw": frame}
        self.events.append(parsed)
        return parsed

    def _record_close(self, closed: ConnectionClosed) -> None:
        if self.close_code is None:
            received = closed.rcvd
            self.close_code = received.code if received is not None else 1006
            self.close_reason = received.reason if received is not None else ""
            self.transcript.add("close", code=self.close_code, reason=self.close_reason)
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
                )
            event = await self._receive_one(remaining)
            if matches(event):
                return event
            if keep_others:
                self._backlog.append(event)

    async def collect_run(self, timeout: float = 15.0) -> list[Event]:
        """Every event from the next run_started to its complete, inclusive."""
        started = await self.expect("run_started", timeout)
        run_id = started["run_id"]
        collected = [started]
        deadline = time.monotonic() + timeout
        while True:
            event = await self.expect(
                lambda e: e.get("run_id") == run_id, max(0.01, deadline - time.monotonic())
            )
            collected.append(event)
            if event["type"] == "complete":
                return collected

    async def wait_closed(self, timeout: float = 10.0) -> int | None:
        """Read until the server closes; returns the close code."""
        deadline = time.monotonic() + timeout
        while self.close_code is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"server did not close within {timeout}s")
            try:
                event = await self._receive_one(remaining)
            except Closed:
                break
            self._backlog.append(event)
        return self.close_code

    async def close(self, code: int = 1000) -> None:
        if self.close_code is None:
            await self.websocket.close(code)
            self.transcript.add("close", code=code, reason="client")
            if self.close_code is None:
                self.close_code = code

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a killed client)."""
        transport = self.websocket.transport
        transport.abort()
        self.transcript.add("close", code=1006, reason="client aborted")
        self.close_code = 1006
