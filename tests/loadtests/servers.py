"""Small ASP servers for the load tool's own tests: one healthy, the others broken one way each.

Each is a few lines on `websockets`' threaded server, independent of the reference server, so a
fault is exactly the one named and nothing the reference server reads into the spec. `running()`
serves one on 127.0.0.1, port 0, in a thread; `no_server()` holds a port where nothing listens.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

_runs = itertools.count(1)


class Stream:
    """One connection's events, with seq rising by one from `session` (seq 1)."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.seq = 0
        self.message_id = ""
        self.send(
            "session",
            protocol_version="1.1",
            session_id=f"s{next(_runs)}",
            conversation_id="c1",
            user={"id": "load"},
            limits={"max_message_bytes": 65536, "heartbeat_interval_ms": 15000, "idle_timeout_ms": 60000},
            capabilities=["fixtures"],
        )

    def send(self, kind: str, **fields: Any) -> None:
        self.seq += 1
        self.ws.send(json.dumps({"type": kind, "seq": self.seq, **fields}))

    def runs(self) -> Iterator[str]:
        """For each `message` received: starts its run (run_started) and yields its run_id;
        `message_id` is then that message's id."""
        for raw in self.ws:
            message = json.loads(raw)
            if message.get("type") == "message":
                run_id, self.message_id = f"r{next(_runs)}", message.get("id", f"m{self.seq}")
                self.send("run_started", run_id=run_id, message_id=self.message_id, conversation_id="c1")
                yield run_id


def paced(ws: ServerConnection, tokens: int = 5, pace_s: float = 0.02) -> None:
    """Healthy: `tokens` deltas `pace_s` apart, then complete stop."""
    stream = Stream(ws)
    for run_id in stream.runs():
        for number in range(tokens):
            if number:
                time.sleep(pace_s)
            stream.send("text_delta", run_id=run_id, delta=f"t{number} ")
        stream.send("complete", run_id=run_id, finish_reason="stop", usage={"output_tokens": tokens})


def stall_after_one_delta(ws: ServerConnection) -> None:
    """One delta, then nothing more of the run."""
    stream = Stream(ws)
    for run_id in stream.runs():
        stream.send("text_delta", run_id=run_id, delta="t0 ")


def non_json_frame(ws: ServerConnection) -> None:
    """Each run: a delta, a frame that is not JSON, then four more deltas 200 ms apart, complete."""
    stream = Stream(ws)
    for run_id in stream.runs():
        stream.send("text_delta", run_id=run_id, delta="t0 ")
        ws.send("this is not JSON")
        for number in range(1, 5):
            time.sleep(0.2)
            stream.send("text_delta", run_id=run_id, delta=f"t{number} ")
        stream.send("complete", run_id=run_id, finish_reason="stop", usage={"output_tokens": 5})


def every_run_fails(ws: ServerConnection) -> None:
    """Each run: a delta, error model_error, complete error (ASP-RUN-008)."""
    stream = Stream(ws)
    for run_id in stream.runs():
        stream.send("text_delta", run_id=run_id, delta="t0 ")
        stream.send(
            "error",
            code="model_error",
            message="failed",
            retryable=False,
            run_id=run_id,
            message_id=stream.message_id,
        )
        stream.send("complete", run_id=run_id, finish_reason="error")


def every_other_run_fails(ws: ServerConnection) -> None:
    """Runs alternate on each connection: paced deltas then complete stop; paced deltas then
    error model_error and complete error."""
    stream = Stream(ws)
    for number, run_id in enumerate(stream.runs()):
        for token in range(3):
            time.sleep(0.02)
            stream.send("text_delta", run_id=run_id, delta=f"t{token} ")
        if number % 2:
            stream.send(
                "error",
                code="model_error",
                message="failed",
                retryable=False,
                run_id=run_id,
                message_id=stream.message_id,
            )
        stream.send("complete", run_id=run_id, finish_reason="error" if number % 2 else "stop")


def foreign_run(ws: ServerConnection) -> None:
    """Each run: a delta of its own, then a delta carrying another run's run_id."""
    stream = Stream(ws)
    for run_id in stream.runs():
        stream.send("text_delta", run_id=run_id, delta="t0 ")
        stream.send("text_delta", run_id=run_id + "-other", delta="t1 ")
        stream.send("complete", run_id=run_id, finish_reason="stop")


def _refuse(connection: ServerConnection, request: Any) -> Any:
    return connection.respond(403, "Forbidden\n")


# name -> (handler, extra keyword arguments of websockets' serve)
SERVERS: dict[str, tuple[Callable[[ServerConnection], None], dict[str, Any]]] = {
    "paced": (paced, {}),
    "stall_after_one_delta": (stall_after_one_delta, {}),
    "non_json_frame": (non_json_frame, {}),
    "every_run_fails": (every_run_fails, {}),
    "every_other_run_fails": (every_other_run_fails, {}),
    "foreign_run": (foreign_run, {}),
    "refuse_handshake": (paced, {"process_request": _refuse}),
    "no_subprotocol": (paced, {"subprotocols": None}),
}


@contextlib.contextmanager
def running(name: str) -> Iterator[str]:
    """Serve SERVERS[name] on a free port; yields its ws:// URL."""
    handler, options = SERVERS[name]
    with serving(handler, **options) as url:
        yield url


@contextlib.contextmanager
def serving(handler: Callable[[ServerConnection], None], **options: Any) -> Iterator[str]:
    """Serve `handler` (one call per connection) on a free port; yields its ws:// URL."""

    def quietly(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):  # the client closing mid-run is expected here
            handler(ws)

    settings: dict[str, Any] = {"subprotocols": ["asp.v1"], **options}
    with serve(quietly, "127.0.0.1", 0, **settings) as server:  # type: ignore[arg-type]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/ws/chat"
        finally:
            server.shutdown()
            thread.join(10)


@contextlib.contextmanager
def no_server() -> Iterator[str]:
    """A URL whose port is held by a socket that does not listen: connecting is refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"ws://127.0.0.1:{held.getsockname()[1]}/ws/chat"
