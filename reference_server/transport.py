"""uvicorn's HTTP and WebSocket protocols, with the transport behaviour ASP needs.

ASGI gives an app no way to choose the code of a keepalive close, to bound a handshake, or to
drop a transport, so these subclasses of uvicorn's own protocols do it:

- `AspHttpProtocol` (h11): a connection must send its request head within handshake_timeout_ms
  (else 408 and close), and at most max_pending_handshakes connections may be waiting for theirs
  (beyond, the oldest is closed), so no number of stalled handshakes can use up the server's file
  descriptors and lock other users out (ASP-TRN-002).
- `AspWebSocketProtocol` (websockets' sans-I/O): its receive queue (`Inbox`, in the scope as
  `asp.inbox`) tells the app when a message arrives; a handshake the WebSocket layer refuses (request
  line or header over its 8 KiB line limit: 414/431) gets that answer at once instead of never; a
  peer that answers no Ping within heartbeat_interval_ms is closed with 4005, not 1011 (ASP-HB-001);
  a close is written at once even when the peer stopped reading, and a transport whose close
  handshake has not finished within close_timeout_s is dropped (a slow consumer gets 4004 when the
  frame can still reach it, else 1006, never a zombie, ASP-LIM-005); at shutdown the app is told
  (`asp.drain`) instead of the connection being closed under its run (ASP-CLS-002).

Both are built per settings by `protocols(settings)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from reference_server.config import Settings
from reference_server.logs import get_logger
from reference_server.protocol.connection import CloseReason

log = get_logger("transport")
DRAIN = {"type": "asp.drain"}
RESERVED_FILES = 64  # the listening socket, the database, logs, the interpreter's own
REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class AspHttpProtocol(H11Protocol):
    handshake_timeout_s = 5.0
    max_pending = 256

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._answered_cycle: Any = None
        self._await_head()

    def _await_head(self) -> None:
        """From now on the peer owes a request head: within the deadline, and among the pending few."""
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.handshake_timeout_s, self._timed_out)
        pending = _pending(self.server_state)
        pending[id(self)] = self
        while len(pending) > self.max_pending:
            _, oldest = pending.popitem(last=False)
            oldest._evict()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not self._answered_cycle or self.transport.get_protocol() is not self:
            self._head_received()  # a request cycle started, or the connection became a WebSocket

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms uvicorn's keep-alive timeout for an idle connection
        self._answered_cycle = self.cycle
        self._await_head()  # and a next request that starts must finish its head in time

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_received()
        super().connection_lost(exc)

    def _head_received(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        _pending(self.server_state).pop(id(self), None)

    def _timed_out(self) -> None:
        self._deadline = None
        _pending(self.server_state).pop(id(self), None)
        if not self.transport.is_closing():
            self.transport.write(REQUEST_TIMEOUT)
            self.transport.close()
            self.loop.call_later(1.0, self.transport.abort)  # a peer that does not even read

    def _evict(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.transport.abort()


def _pending(server_state: Any) -> OrderedDict[int, AspHttpProtocol]:
    pending: OrderedDict[int, AspHttpProtocol] | None = getattr(server_state, "asp_pending_handshakes", None)
    if pending is None:
        pending = OrderedDict()
        server_state.asp_pending_handshakes = pending
    return pending


INBOX = "asp.inbox"  # scope key: the connection's Inbox, for an app that waits without a task
SEND_NOW = "asp.send_now"  # scope key: the connection's AspWebSocketProtocol.send_now


def text_frame(payload: bytes) -> bytes:
    """One unfragmented text message as a server sends it (RFC 6455 section 5.2: FIN, opcode 1,
    no mask, no extension): the bytes websockets' `Protocol.send_text(payload)` followed by
    `data_to_send()` produce on a connection with no extension negotiated. `payload` is UTF-8."""
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 65_536:
        return bytes((0x81, 126)) + length.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + length.to_bytes(8, "big") + payload


class Inbox(asyncio.Queue[Any]):
    """uvicorn's receive queue, which also calls `listener` when a message arrives, so the app can
    wait for frames, timers and its own events on one future instead of a task per frame.

    Only an app that got the connection's own `receive` (`receive == inbox.receive`) may use it:
    a middleware that wraps receive (and may make messages of its own) must be awaited instead."""

    listener: Callable[[], None] | None = None
    receive: Callable[[], Any] | None = None  # the connection's ASGI receive, which reads this queue

    def put_nowait(self, item: Any) -> None:
        super().put_nowait(item)
        if self.listener is not None:
            self.listener()


class AspWebSocketProtocol(WebSocketsSansIOProtocol):
    close_timeout_s = 10.0
    drain_on_shutdown = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        inbox = cast(Inbox, self.queue)
        inbox.receive = self.receive
        cast(dict[str, Any], self.scope)[INBOX] = inbox
        cast(dict[str, Any], self.scope)[SEND_NOW] = self.send_now

    def send_receive_event_to_app(self) -> None:
        """A text message that is not UTF-8 is the peer's fault (ASP-TRN-004): closed 1007 with one
        log line. uvicorn's own path logs it with a traceback at ERROR, which lets any client fill
        the server's log (one traceback per connection it opens)."""
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError as error:
                self.frames = []
                log.info("closing a connection that sent text that is not UTF-8 (%s)", error.reason)
                self.conn.send_close(CloseReason.INVALID_UTF8.code)
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()

    def send_now(self, text: str) -> bool:
        """Write a text message at once, as `send` does when it need not wait; False (nothing
        written) when the transport is paused (`send` would wait for it to drain) or the connection
        is not open for messages (`send` then says why). Only an app that got this connection's own
        `send` may use it: a middleware that wraps send must see every message."""
        if (
            not self.writable.is_set()
            or self.disconnected
            or not self.handshake_complete
            or self.close_sent
            or self.initial_response is not None
        ):
            return False
        conn = self.conn
        if conn.state is State.OPEN and not (
            conn.extensions or conn.writes or conn.debug or conn.expect_continuation_frame
        ):
            # the bytes websockets would build (tests/server/test_transport_frames.py), without its
            # Frame object, its checks and its output queue per event
            self.transport.write(text_frame(text.encode()))
            return True
        conn.send_text(text.encode())  # raises (InvalidState) as before when not open
        self.transport.write(b"".join(conn.data_to_send()))
        return True

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            self._answer_refused_handshake()

    def _answer_refused_handshake(self) -> None:
        """websockets queued its answer (414, 431) or an EOF; uvicorn never writes it: we do."""
        self.handshake_initiated = self.handshake_complete = self.close_sent = True
        output = b"".join(self.conn.data_to_send())
        if output:
            self.transport.write(output)
        self.transport.close()
        self.loop.call_later(1.0, self.transport.abort)

    def handle_parser_exception(self) -> None:
        """The peer broke the protocol (a message over max_size: 1009; invalid UTF-8: 1007):
        websockets queued the close frame and an end of stream. Write the frame, half-close, and
        keep reading (websockets discards it) until the peer's end of stream, close_timeout_s at
        most. uvicorn closed the socket at once, and a peer still sending the rest of its fragments
        then got a reset before it could read the close code."""
        if self.close_sent:  # the parser keeps its error: later data lands here again, discarded
            return
        assert self.conn.close_sent is not None
        code, reason = self.conn.close_sent.code, self.conn.close_sent.reason
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.stop_keepalive()
        for chunk in self.conn.data_to_send():
            if chunk:
                self.transport.write(chunk)
            elif self.transport.can_write_eof():
                self.transport.write_eof()  # FIN after the close frame; the read side stays open
        self.close_sent = True
        if self.close_timer is not None:
            self.close_timer.cancel()
        self.close_timer = self.loop.call_later(self.close_timeout_s, self._drop)

    def keepalive_timeout(self) -> None:
        """No Pong within heartbeat_interval_ms: close with 4005 (ASP-HB-001)."""
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.close_sent or self.transport.is_closing():
            return
        log.info("closing a connection that answered no ping (%s)", CloseReason.HEARTBEAT.value)
        self._close_now(CloseReason.HEARTBEAT.code, "heartbeat timeout")

    async def send(self, message: Any) -> None:
        if message["type"] == "websocket.close" and self._may_close_now():
            self._close_now(int(message.get("code", 1000)), str(message.get("reason") or ""))
            return
        await super().send(message)

    def _may_close_now(self) -> bool:
        return (
            self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.initial_response is None
            and not self.transport.is_closing()
        )

    def _close_now(self, code: int, reason: str) -> None:
        """Write the close frame now, behind whatever is buffered, without waiting for the peer to
        read; drop the transport if the close handshake is not done within close_timeout_s."""
        self.stop_keepalive()
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        if self.close_timer is not None:
            self.close_timer.cancel()
        self.close_timer = self.loop.call_later(self.close_timeout_s, self._drop)

    def _drop(self) -> None:
        self.close_timer = None
        if not self.transport.is_closing() or self.transport.get_write_buffer_size():
            self.transport.abort()

    def shutdown(self) -> None:
        """Server shutdown: let the app finish its run and close with 1012 itself (ASP-CLS-002)."""
        if self.drain_on_shutdown and self._may_close_now():
            self.queue.put_nowait(cast(Any, DRAIN))  # not an ASGI event: the endpoint knows it
            if self.read_paused:
                self.read_paused = False
                self.transport.resume_reading()
            return
        super().shutdown()


def raise_file_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit; returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65_536)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def pending_handshake_cap(settings: Settings) -> int:
    """How many connections may be waiting for their request head: the setting, or half of the
    file descriptors left once every admitted connection (and its superseded one) and the server's
    own files have theirs, so stalled handshakes can never take the last descriptor."""
    if settings.max_pending_handshakes is not None:
        return settings.max_pending_handshakes
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, (soft - 2 * settings.max_connections - RESERVED_FILES) // 2)


def accept_backlog() -> int:
    """The listen backlog, which asyncio also uses as the most connections it accepts at once: a
    quarter of the file descriptors (2,048 at most), so one burst of connects cannot take them all
    before the pending-handshake cap closes the oldest."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(64, min(2048, soft // 4))


def protocols(settings: Settings) -> tuple[type[AspHttpProtocol], type[AspWebSocketProtocol]]:
    """The protocol classes for uvicorn.Config(http=..., ws=...), with these settings."""
    http = type(
        "AspHttpProtocol",
        (AspHttpProtocol,),
        {
            "handshake_timeout_s": settings.handshake_timeout_ms / 1000,
            "max_pending": pending_handshake_cap(settings),
        },
    )
    websocket = type(
        "AspWebSocketProtocol", (AspWebSocketProtocol,), {"close_timeout_s": settings.send_timeout_ms / 1000}
    )
    return http, websocket
