"""One authenticated connection: client messages in, the session's events out, and its clocks.

Four tasks per connection:
- the reader (`serve`) handles each client frame as it arrives;
- the writer sends queued frames one at a time; a send stalled for `send_timeout_ms`, or more than
  `max_pending_events` live frames waiting, is a slow consumer: closed with 4004 and, if even the
  close cannot be written within a moment, the transport is aborted (ASP-LIM-005);
- the idle watcher closes with 4003 once no data frame arrived for `idle_timeout_ms`, counted from
  the later of the last data frame and the end of the last run, never while a run is active
  (ASP-HB-002, ASP-HB-005, ASP-HB-006);
- the heartbeat sends a WebSocket Ping every `heartbeat_interval_ms` and closes with 4005 when
  its Pong does not come back within that interval (ASP-HB-001).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from examples.minimal_server import codes, events, inbound, model, sizing
from examples.minimal_server.runs import Run
from examples.minimal_server.sessions import Session

if TYPE_CHECKING:
    from examples.minimal_server.server import App

log = logging.getLogger("asp.minimal.connection")

CLOSE_TIMEOUT_S = 2.0  # how long a close frame may take to leave before the transport is aborted


@dataclass(frozen=True)
class Closing:
    """Queued after the frames a closing connection still sends (`Connection.close(flush=True)`)."""

    code: int
    reason: str


@dataclass(frozen=True)
class Replay:
    """A resumed session's kept frames, queued as one item: they are already held by the session's
    replay buffer, so they do not count against `max_pending_events`."""

    frames: list[str]


class Connection:
    def __init__(self, websocket: ServerConnection, app: App, user: str) -> None:
        self.websocket = websocket
        self.app = app
        self.config = app.config
        self.user = user
        self.session: Session | None = None
        self.last_data = time.monotonic()  # the last client data frame (ASP-HB-005)
        self.resumed = False
        self.closing = False
        self._outbox: asyncio.Queue[str | Replay | Closing] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    # --- opening ---------------------------------------------------------------------------

    def open(self, requested_conversation: str | None) -> None:
        """Start a new session: `session`, then `history` if the conversation has any, then
        `conversation_not_found` if the requested one was unknown (ASP-SES-001..010)."""
        store = self.app.store
        conversation_id, unknown = store.bind(self.user, requested_conversation)
        config = self.config
        session = Session(self.user, conversation_id, config.replay_window, config.vendor_extensions)
        self.app.sessions.add(session)
        session.attach(self)
        self.session = session
        session.emit(events.session(config, session.id, conversation_id, self.user))
        entries = store.entries(conversation_id)
        if entries:
            session.emit(sizing.fit_history(events.history(conversation_id, entries), config.max_event_bytes))
        if unknown:
            session.emit(events.error("conversation_not_found", "no such conversation; started a new one"))

    def _current(self) -> Session:
        assert self.session is not None, "open() first"
        return self.session

    # --- serving ---------------------------------------------------------------------------

    async def serve(self) -> None:
        """Handle client frames until the connection closes; the session then outlives it."""
        self._writer = asyncio.create_task(self._write())
        watchers = [asyncio.create_task(self._watch_idle()), asyncio.create_task(self._heartbeat())]
        try:
            async for frame in self.websocket:
                self.last_data = time.monotonic()
                self._handle(frame)
        except ConnectionClosed:
            pass
        finally:
            self._current().detach(self)
            for task in [self._writer, *watchers]:
                task.cancel()
            if self._closer is not None:
                await asyncio.shield(self._closer)

    def _handle(self, frame: str | bytes) -> None:
        message = inbound.read(frame)
        if isinstance(message, inbound.Refusal):
            self._refuse(message.code, message.detail, message.message_id)
            return
        handlers = {
            "message": self._on_message,
            "cancel": self._on_cancel,
            "ping": self._on_ping,
            "resume": self._on_resume,
        }
        handlers[message["type"]](message)

    def _refuse(self, code: str, detail: str, message_id: str | None, **extra: Any) -> None:
        """Answer a client message with an error: no run_id, its id if valid (ASP-ERR-012)."""
        self._current().emit(events.error(code, detail, message_id=message_id, **extra))

    def _on_message(self, message: dict[str, Any]) -> None:
        """Start a run (ASP-MSG-001), or refuse in this order: shutting down (ASP-CLS-005), another
        conversation (ASP-MSG-004), a run active (ASP-RUN-002), the rate (ASP-LIM-009)."""
        session, app, message_id = self._current(), self.app, message.get("id")
        now = time.monotonic()
        if app.shutting_down:
            self._refuse("shutting_down", "the server is shutting down", message_id)
        elif message.get("conversation_id", session.conversation_id) != session.conversation_id:
            self._refuse("conversation_not_found", "not this session's conversation", message_id)
        elif session.run is not None:
            self._refuse("run_in_progress", "a run is active; send after its complete", message_id)
        elif (retry := app.rate.retry_after_ms(self.user, now)) is not None:
            self._refuse("rate_limited", "too many messages", message_id, retry_after_ms=retry)
        else:
            app.rate.record(self.user, now)
            content = str(message["content"])
            steps = model.answer(
                content,
                app.store.user_messages(session.conversation_id),
                fixtures=self.config.fixtures,
                pace_ms=self.config.token_delay_ms,
            )
            run = Run(
                session,
                content,
                message_id or "msg_" + secrets.token_hex(8),
                app.store,
                self.config.max_event_bytes,
                self.config.vendor_extensions,
            )
            run.start(steps)
            app.track(run)

    def _on_cancel(self, message: dict[str, Any]) -> None:
        """Stop the active run (ASP-CAN-001); nothing active, or another run named: no_active_run."""
        run = self._current().run
        named = message.get("run_id")
        if run is None or (named is not None and named != run.id):
            self._refuse("no_active_run", "no such run is active", message.get("id"))
        else:
            run.stop("cancel")

    def _on_ping(self, message: dict[str, Any]) -> None:
        self._current().emit(events.pong(message.get("id")))  # also during runs (ASP-MSG-003)

    def _on_resume(self, message: dict[str, Any]) -> None:
        """Carry an earlier session from `last_seq` + 1 (ASP-RES-001), or refuse (ASP-RES-002/006)."""
        own, last_seq = self._current(), int(message["last_seq"])
        earlier = self.app.sessions.find(message["session_id"], self.user)
        frames = earlier.kept_after(last_seq) if earlier is not None else None
        if self.resumed or own.runs_started or earlier is None or earlier is own or frames is None:
            self._refuse("resume_failed", "this session cannot be resumed here", message.get("id"))
            return
        own.emit(events.resumed(earlier.id, last_seq + 1, len(frames)))
        own.detach(self)
        self.app.sessions.discard(own)  # the new session ends here
        if earlier.outlet is not None:
            earlier.detach(earlier.outlet)
        self._outbox.put_nowait(Replay(frames))
        earlier.attach(self)
        self.session, self.resumed = earlier, True
        self.app.store.remember(self.user, earlier.conversation_id)

    # --- writing and closing ---------------------------------------------------------------

    def deliver(self, frame: str) -> None:
        """Queue one encoded event; too many waiting makes this a slow consumer (ASP-LIM-005)."""
        if self.closing:
            return
        if self._outbox.qsize() >= self.config.max_pending_events:
            self.close(codes.SLOW_CONSUMER, "slow consumer: resume to catch up", flush=False)
            return
        self._outbox.put_nowait(frame)

    async def _write(self) -> None:
        timeout = self.config.send_timeout_ms / 1000
        while True:
            item = await self._outbox.get()
            if isinstance(item, Closing):
                self._closer = asyncio.create_task(self._close_now(item.code, item.reason))
                return
            try:
                for frame in item.frames if isinstance(item, Replay) else [item]:
                    await asyncio.wait_for(self.websocket.send(frame), timeout)
            except TimeoutError:
                self.close(codes.SLOW_CONSUMER, "slow consumer: resume to catch up", flush=False)
                return
            except ConnectionClosed:
                return

    def close(self, code: int, reason: str, *, flush: bool) -> None:
        """Close once with `code`. `flush`: after the frames already queued (shutdown, idle);
        otherwise at once, dropping them (they stay in the session's replay buffer)."""
        if self.closing:
            return
        self.closing = True
        if self.session is not None:
            self.session.detach(self)
        if flush and self._writer is not None and not self._writer.done():
            self._outbox.put_nowait(Closing(code, reason))
            return
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
        self._closer = asyncio.create_task(self._close_now(code, reason))

    async def _close_now(self, code: int, reason: str) -> None:
        """Send the close frame; abort the transport if it cannot leave in time (a peer not reading)."""
        try:
            await asyncio.wait_for(self.websocket.close(code, reason), CLOSE_TIMEOUT_S)
        except TimeoutError:
            self.websocket.transport.abort()

    # --- clocks ----------------------------------------------------------------------------

    async def _watch_idle(self) -> None:
        idle_s = self.config.idle_timeout_ms / 1000
        while True:
            session = self._current()
            if session.run is not None:
                await session.run.done.wait()
                continue
            quiet_since = max(self.last_data, session.last_run_end)
            remaining = quiet_since + idle_s - time.monotonic()
            if remaining <= 0:
                self.close(codes.IDLE_TIMEOUT, "idle timeout", flush=True)
                return
            await asyncio.sleep(remaining)

    async def _heartbeat(self) -> None:
        interval = self.config.heartbeat_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                async with asyncio.timeout(interval):
                    pong = await self.websocket.ping()
                    await pong
            except TimeoutError:
                self.close(codes.HEARTBEAT_TIMEOUT, "no pong to the last ping", flush=False)
                return
            except ConnectionClosed:
                return
