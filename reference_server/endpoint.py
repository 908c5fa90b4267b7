"""The /ws/chat endpoint: it carries out what the decision core decides, and nothing else.

Every protocol decision (version, credentials, which error answers which frame, when a run starts,
resume, idle and shutdown closes) is taken in `reference_server.protocol`; this module moves
frames between the ASGI connection, the core, the session and the hub, in the order the core's
effects say. It speaks raw ASGI after the route hands it the connection, which also lets it see
the transport's `asp.drain` message at shutdown (see `reference_server.transport`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.types import Message, Receive
from starlette.types import Send as AsgiSend
from starlette.websockets import WebSocket

from reference_server import auth, tracing
from reference_server.hub import Hub
from reference_server.logs import get_logger
from reference_server.protocol import connection as core
from reference_server.protocol import handshake
from reference_server.protocol.effects import (
    AdmitRun,
    BindResumed,
    CancelRun,
    Close,
    Effect,
    FindSession,
    Send,
    StartRun,
    SwitchSession,
)
from reference_server.runs import new_message_id, new_run_id
from reference_server.sessions import Session, SinkClosed, spawn
from reference_server.transport import INBOX, SEND_NOW, Inbox

if TYPE_CHECKING:
    from reference_server.redis_sessions import Remote

log = get_logger("endpoint")
DRAIN = "asp.drain"  # sent by reference_server.transport when the server begins shutting down


class WebSocketSink:
    """The ASGI connection as a session's sink; any transport failure becomes SinkClosed."""

    def __init__(
        self, send: AsgiSend, close_timeout_s: float, send_now: Callable[[str], bool] | None = None
    ) -> None:
        self.cursor = 0
        self.closed = False
        self._send = send  # the ASGI send callable
        self._send_now = send_now  # the transport's synchronous write, when nothing wraps send
        self._close_timeout_s = close_timeout_s

    async def accept(self, subprotocol: str | None) -> None:
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol})

    async def send_text(self, text: str) -> None:
        if self.closed:
            raise SinkClosed
        try:
            await self._send({"type": "websocket.send", "text": text})
        except Exception as exc:
            self.closed = True
            raise SinkClosed from exc

    def send_now(self, text: str) -> bool:
        """The per-token hot path: write at once when the transport can take it (no await)."""
        if self.closed:
            raise SinkClosed
        if self._send_now is None:
            return False
        try:
            return self._send_now(text)
        except Exception as exc:
            self.closed = True
            raise SinkClosed from exc

    async def close(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._close_timeout_s):
                await self._send({"type": "websocket.close", "code": code, "reason": reason})


async def chat(websocket: WebSocket) -> None:
    """The ASGI WebSocket endpoint (one call per connection)."""
    hub: Hub = websocket.app.state.hub
    await Connection(websocket, hub).serve()


class Connection:
    """One WebSocket connection: its ASGI callables, its core state, the session it carries."""

    def __init__(self, websocket: WebSocket, hub: Hub) -> None:
        self.hub = hub
        self.scope = websocket.scope
        self.receive: Receive = websocket._receive
        send_now = websocket.scope.get(SEND_NOW)
        # the transport's own write, when nothing between it and this endpoint wraps send
        own_send = getattr(getattr(send_now, "__self__", None), "send", None) == websocket._send
        self.sink = WebSocketSink(
            websocket._send, hub.settings.send_timeout_ms / 1000, send_now if own_send else None
        )
        self.query = websocket.query_params
        self.headers = websocket.headers
        self.state: core.ConnectionState | None = None
        self.session: Session | None = None
        self.closed = False
        self.superseded = False
        # the 4002 close supersede() runs in the background: _open awaits it before it returns
        self._superseding: asyncio.Task[None] | None = None
        # Resolved by a frame, a timer or the session (a run ended): the loop wakes to re-decide.
        self._wake: asyncio.Future[None] | None = None
        self._found: Session | Remote | None = None  # the session a resume names, found for SwitchSession
        self._mirrored: Session | None = None  # the mirror of a resumed Remote, made when it was accepted
        self._timer: asyncio.TimerHandle | None = None  # wakes the loop at (or before) the deadline
        self._timer_at = 0.0  # monotonic time the timer is set for
        inbox = websocket.scope.get(INBOX)
        # the transport's queue, when nothing between it and this endpoint wraps receive
        own = isinstance(inbox, Inbox) and inbox.receive is not None and inbox.receive == self.receive
        self.inbox: Inbox | None = inbox if own else None

    # --- the handshake ---------------------------------------------------------------------------

    async def serve(self) -> None:
        connect = await self.receive()
        if connect["type"] != "websocket.connect":
            return
        offered = list(self.scope.get("subprotocols") or [])
        secret = self.hub.settings.secret
        decision = handshake.decide(
            offered, self.query, self.headers, lambda token: auth.verify(token, secret)
        )
        await self.sink.accept(decision.subprotocol)
        if decision.refusal is not None or decision.user_id is None:  # ASP-TRN-002: accept, then the code
            if decision.why:
                log.info("refused connection: %s", decision.why)
            refusal = decision.refusal or core.close(core.CloseReason.UNAUTHORIZED, "unauthorized")
            await self.sink.close(refusal.code, refusal.reason)
            return
        user_id = decision.user_id
        admitted = await self.hub.registry.admit(user_id, self)
        if admitted is None:
            refusal = core.close(core.CloseReason.AT_CAPACITY, "server at capacity")
            await self.sink.close(refusal.code, refusal.reason)
            return
        try:
            if admitted.superseded is not None:
                admitted.superseded.supersede()
            await self._open(user_id)
        finally:
            self._leave_session()
            await self.hub.registry.release(user_id, self)

    def supersede(self) -> None:
        """The user's newer connection took this one's slot (ASP-DUP-001): close it with 4002 in the
        background (its session and run go on); the newer connection does not wait for that."""
        self.superseded = True
        if self.state is not None:
            self._superseding = spawn(self.carry_out(core.on_superseded(self.state)))

    async def _open(self, user_id: str) -> None:
        bound = await self.hub.bind_conversation(user_id, self.query.get("conversation_id"))
        session = await self.hub.open_session(user_id, bound.conversation_id)
        settings = self.hub.settings
        self.state = core.ConnectionState(
            user_id=user_id,
            session=session.state,
            idle_timeout_s=settings.idle_timeout_ms / 1000,
            max_message_bytes=settings.max_message_bytes,
            last_data_at=time.monotonic(),
            new_run_id=new_run_id,
            new_message_id=new_message_id,
        )
        self._enter_session(session)
        context = {"asp": {"user": user_id, "session": session.id}}
        log.info("session opened", extra=context)
        history = await self.hub.history_event(session, bound.created)
        await self.carry_out(core.opening(self.hub.session_event(session), history, bound.refused))
        if self.superseded:
            await self.carry_out(core.on_superseded(self.state))
        try:
            with tracing.span("asp.connection", user=user_id, session=session.id):
                await self._drive()
        finally:
            # The loop ends as soon as the close begins (a frame arriving during the 4002 close's
            # flush wakes it): returning before the close frame is written would end the ASGI app
            # and drop the transport, a 1006 instead of 4002. spawn() bounds the wait.
            if self._superseding is not None:
                await self._superseding
        log.info("session detached", extra={"asp": {"user": user_id, "session": self.session_id}})

    @property
    def session_id(self) -> str:
        return self.session.id if self.session is not None else ""

    def _enter_session(self, session: Session, after_seq: int | None = None) -> None:
        self.session = session
        session.attach(self.sink, after_seq=after_seq)
        session.listen(self._wake_up)

    def _leave_session(self) -> None:
        if self.session is not None:
            self.session.unlisten(self._wake_up)
            self.session.detach(self.sink)

    # --- the loop: frames, timers and run ends in; effects out -------------------------------------

    def _wake_up(self, *_: object) -> None:
        """Wake the loop (a frame arrived, a deadline passed, or the session's run ended)."""
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _timer_fired(self) -> None:
        self._timer = None
        self._wake_up()

    def _set_timer(self, deadline: float | None, loop: asyncio.AbstractEventLoop) -> None:
        """Keep one timer at or before `deadline` (monotonic): a later deadline keeps the timer it
        has (it wakes the loop early, which sets it again), so frames do not each make a timer."""
        if deadline is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        if self._timer is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = loop.call_at(deadline - time.monotonic() + loop.time(), self._timer_fired)

    async def _drive(self) -> None:
        """One future per turn of the loop, woken by a frame, the timer or the session; with the
        transport's Inbox no task waits for frames (else one task per frame does)."""
        state = self.state
        assert state is not None
        loop = asyncio.get_running_loop()
        inbox = self.inbox
        receiving: asyncio.Future[Message] | None = None
        if inbox is not None:
            inbox.listener = self._wake_up
        try:
            while not self.closed:
                if inbox is None and receiving is None:
                    receiving = asyncio.ensure_future(self.receive())
                    receiving.add_done_callback(self._wake_up)
                wake = self._wake = loop.create_future()
                if (inbox is not None and not inbox.empty()) or (receiving is not None and receiving.done()):
                    wake.set_result(None)
                self._set_timer(core.next_deadline(state), loop)
                try:
                    await wake
                finally:
                    self._wake = None
                message: Message | None = None
                if inbox is not None:
                    if not inbox.empty():
                        message = await self.receive()  # at once: the queue holds it
                elif receiving is not None and receiving.done():
                    message, receiving = receiving.result(), None
                now = time.monotonic()
                if message is None:
                    effects = core.on_timer(state, now)
                elif message["type"] == "websocket.disconnect":
                    self.closed = self.sink.closed = True
                    return
                elif message["type"] == DRAIN:
                    self.hub.drain()
                    effects = core.on_drain(state, now)
                else:
                    effects = core.on_frame(state, message.get("text"), message.get("bytes"), now)
                await self.carry_out(effects)
        finally:
            if inbox is not None:
                inbox.listener = None
            if receiving is not None:
                receiving.cancel()
            self._set_timer(None, loop)

    async def carry_out(self, effects: list[Effect]) -> None:
        """Carry the core's effects out, in order; questions are answered before the next frame."""
        state, session = self.state, self.session
        assert state is not None and session is not None
        for effect in effects:
            if isinstance(effect, Send):
                session.emit(effect.event)
            elif isinstance(effect, Close):
                await self._close(effect)
                return
            elif isinstance(effect, StartRun):
                self.hub.start_run(session, effect.run_id, effect.message_id, effect.content)
            elif isinstance(effect, CancelRun):
                self.hub.cancel_run(effect.run_id, session)
            elif isinstance(effect, AdmitRun):
                decision = await self.hub.limiter.acquire(state.user_id, time.monotonic())
                await self.carry_out(core.on_admission(state, effect.request, decision, time.monotonic()))
            elif isinstance(effect, FindSession):
                target = await self._target(effect)
                decided = core.on_resume_target(state, effect.request, target)
                pinned = self._pin(decided)  # no await between the check and the pin
                if pinned is None:
                    await self._refused(effect)
                try:
                    await self.carry_out(decided)
                finally:
                    self._mirrored = None
                    if pinned is not None and self.session is not pinned:  # not attached: released here
                        pinned.release(effect.request.last_seq + 1)
            elif isinstance(effect, BindResumed):
                await self._bind_resumed(effect)
            elif isinstance(effect, SwitchSession):
                await self._switch(effect)

    async def _target(self, effect: FindSession) -> core.ResumeTarget | None:
        self._found = target = await self.hub.find_session(effect.request.session_id, effect.request.last_seq)
        if target is None:
            return None
        if not isinstance(target, Session):  # held by another process (shared sessions)
            return core.ResumeTarget(target.user_id, target.last_seq, target.oldest_seq)
        return core.ResumeTarget(
            user_id=target.user_id,
            last_seq=target.seq,
            oldest_kept_seq=target.oldest_kept_seq,
            resumable=not (target.failed or target.closed),
        )

    async def _refused(self, effect: FindSession) -> None:
        """The resume was refused (resume_failed, or the connection closed meanwhile): a session of
        another process found for it leaves the follower's position `find` took released at once,
        before the refusal is sent, rather than holding the home's trim until it expires. A Redis
        failure here only leaves the key to its expiry."""
        found, self._found = self._found, None
        if found is None or isinstance(found, Session) or self.hub.shared is None:
            return
        try:
            await self.hub.shared.unfollow(found)
        except Exception:
            log.warning("could not release a refused resume's follow key", exc_info=True)

    def _pin(self, decided: list[Effect]) -> Session | None:
        """A resume was accepted: pin the session from the first event to replay until this
        connection attaches to it (the switch awaits in between, while its run goes on), so the
        events the decision found kept are still kept when they are replayed. The caller releases
        the pin unless the switch attached (which releases it).

        A session another process holds (shared sessions) cannot be pinned there: its Redis Stream
        is trimmed to replay_window as its home writes. It is mirrored here at once instead, and the
        mirror pinned: its follower reads the stream from after_seq from the next turn of the loop,
        and what it reads waits in the mirror until this connection attaches. Should the switch
        fail, the mirror stays as a detached session of this process (as after a resume whose
        connection then closed)."""
        found = self._found
        switch = next((e for e in decided if isinstance(e, SwitchSession)), None)
        if switch is None or found is None:
            return None
        if not isinstance(found, Session):
            assert self.hub.shared is not None
            self._mirrored = found = self.hub.shared.mirror(found, switch.after_seq)
        found.pin(switch.after_seq + 1)
        return found

    async def _bind_resumed(self, effect: BindResumed) -> None:
        found = self._found
        if found is None:  # cannot happen: the core asks only after a session was found
            return
        found_id = found.id if isinstance(found, Session) else found.session_id
        if found_id == effect.session_id:
            await self.hub.store.bind(found.conversation_id, found.user_id)

    async def _switch(self, effect: SwitchSession) -> None:
        """Resume: the `resumed` event leaves on the old session, then the target replays."""
        found, self._found = self._found, None
        current = self.session
        assert self.state is not None and current is not None
        found_id = found.id if isinstance(found, Session) else found.session_id if found else None
        if found is None or found_id != effect.session_id:  # cannot happen; kept for safety
            return
        # A session another process holds was mirrored (and the mirror pinned) when the resume was
        # accepted, in the same step (_pin): that is the one place a mirror is made for a resume.
        target = found if isinstance(found, Session) else self._mirrored
        assert target is not None, "a resumed Remote is mirrored when the resume is accepted (_pin)"
        self._mirrored = None
        await current.flush()
        self._leave_session()
        self.hub.discard_session(current)
        await current.close()
        self._enter_session(target, after_seq=effect.after_seq)
        core.switched(self.state, target.state)

    async def _close(self, effect: Close) -> None:
        self.closed = True
        if self.session is not None:
            await self.session.flush(timeout=min(1.0, self.hub.settings.send_timeout_ms / 1000))
        self._leave_session()
        await self.sink.close(effect.code, effect.reason)
