"""A blocking ASP client on websocket-client: cooperative under Locust's gevent (asyncio is not)."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import websocket

from spec import SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX


class Closed(Exception):
    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"closed {code} {reason}")
        self.code = code
        self.reason = reason


@dataclass
class RunMeasure:
    """One run as a load test sees it."""

    ttft_s: float | None = None
    e2e_s: float = 0.0
    gaps_s: list[float] = field(default_factory=list)
    deltas: int = 0
    events: int = 0
    output_tokens: int = 0
    finish_reason: str = ""

    @property
    def tpot_s(self) -> float | None:
        if self.ttft_s is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


class SyncAspClient:
    def __init__(self, url: str, token: str, timeout: float = 30.0, token_in: str = "subprotocol") -> None:
        self.url = url
        self.token = token
        self.timeout = timeout
        self.token_in = token_in
        self.ws: websocket.WebSocket | None = None
        self.session: dict[str, Any] = {}
        self.events_received = 0

    def connect(self) -> dict[str, Any]:
        """Open and read the first event; a close instead of session raises Closed with its code."""
        protocols = [SUBPROTOCOL]
        url = self.url
        if self.token_in == "subprotocol":
            protocols.append(TOKEN_SUBPROTOCOL_PREFIX + self.token)
        else:
            url += ("&" if "?" in url else "?") + f"token={self.token}"
        try:
            self.ws = websocket.create_connection(
                url, subprotocols=protocols, timeout=self.timeout, enable_multithread=False
            )
        except websocket.WebSocketBadStatusException as refused:
            raise Closed(refused.status_code, "http") from None
        self.session = self.recv()
        return self.session

    def recv(self) -> dict[str, Any]:
        assert self.ws is not None
        try:
            opcode, data = self.ws.recv_data(control_frame=False)
        except websocket.WebSocketConnectionClosedException:
            raise Closed(1006) from None
        except (ConnectionError, OSError):
            raise Closed(1006) from None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
            raise Closed(code, data[2:].decode(errors="replace"))
        self.events_received += 1
        event: dict[str, Any] = json.loads(data)
        return event

    def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        self.ws.send(json.dumps(message))

    def ping(self, ping_id: str) -> float:
        began = time.perf_counter()
        self.send({"type": "ping", "id": ping_id})
        while True:
            event = self.recv()
            if event.get("type") == "pong" and event.get("id") == ping_id:
                return time.perf_counter() - began

    def run(self, content: str) -> RunMeasure:
        measure = RunMeasure()
        began = time.perf_counter()
        self.send({"type": "message", "content": content})
        last_delta: float | None = None
        while True:
            event = self.recv()
            measure.events += 1
            kind = event.get("type")
            now = time.perf_counter()
            if kind == "text_delta" and event.get("delta"):
                if measure.ttft_s is None:
                    measure.ttft_s = now - began
                if last_delta is not None:
                    measure.gaps_s.append(now - last_delta)
                last_delta = now
                measure.deltas += 1
            elif kind == "complete":
                measure.e2e_s = now - began
                measure.finish_reason = str(event.get("finish_reason"))
                usage = event.get("usage") or {}
                measure.output_tokens = int(usage.get("output_tokens") or measure.deltas)
                return measure
            elif kind == "error" and "run_id" not in event:
                raise RuntimeError(f"error {event.get('code')}: {event.get('message')}")

    def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):  # already closed by the server
                self.ws.close()
            self.ws = None
