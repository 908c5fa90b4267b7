"""The /ws/chat endpoint: handshake decisions, authentication, limits, and the receive loop."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time

from starlette.websockets import WebSocket, WebSocketDisconnect

from reference_server import tracing
from reference_server.auth import AuthError, extract_token, verify
from reference_server.history import entries as history_entries
from reference_server.hub import Hub, Peer
from reference_server.logs import get_logger
from reference_server.protocol import events
from reference_server.protocol.inbound import Command, Rejection, TooLarge, parse_frame
from reference_server.runs import execute, new_run_id
from reference_server.sessions import RunState, Session, SinkClosed, spawn
from spec import SUBPROTOCOL
from spec.registry import close_code

log = get_logger("endpoint")

UNSUPPORTED_VERSION = close_code("unsupported_version")
UNAUTHORIZED = close_code("unauthorized")
SUPERSEDED = close_code("superseded")
IDLE_TIMEOUT = close_code("idle_timeout")
TRY_AGAIN_LATER = close_code("try_again_later")
MESSAGE_TOO_BIG = close_code("message_too_big")
VERSION_PREFIX = "asp.v"


class WebSocketSink:
    """A Starlette WebSocket as a session sink; any transport failure becomes SinkClosed."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.cursor = 0
        self.closed = False
        # The ASGI send callable itself: this is the per-token hot path, and the session's pump is
        # its only caller after accept, so Starlette's per-message state checks add nothing.
        self._asgi_send = websocket._send

    async def send_text(self, text: str) -> None:
        if self.closed:
            raise SinkClosed
        try:
            await self._asgi_send({"type": "websocket.send", "text": text})
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            self.closed = True
            raise SinkClosed from exc

    async def close(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            await self.websocket.close(code, reason)


async def chat(websocket: WebSocket) -> None:
    hub: Hub = websocket.app.state.hub
    offered = list(websocket.scope.get("subprotocols") or [])
    versions = [p for p in offered if p.startswith(VERSION_PREFIX)]
    if versions and SUBPROTOCOL not in versions:
        await websocket.accept()  # ASP-TRN-002: accept, then say why with a close code
        await websocket.close(UNSUPPORTED_VERSION, "unsupported protocol version")
        return
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    sink = WebSocketSink(websocket)
    if not hub.registry.try_reserve():
        await sink.close(TRY_AGAIN_LATER, "server at capacity")
        return
    try:
        await _serve(websocket, sink, hub, offered)
    finally:
        hub.registry.release()


async def _serve(websocket: WebSocket, sink: WebSocketSink, hub: Hub, offered: list[str]) -> None:
    token = extract_token(websocket.query_params, offered, websocket.headers)
    try:
        user_id = verify(token, hub.settings.secret)
    except AuthError as refused:
        log.info("refused connection: %s", refused)
        await sink.close(UNAUTHORIZED, "unauthorized")
        return
    conversation_id, refused_conversation = await hub.bind_conversation(
        user_id, websocket.query_params.get("conversation_id")
    )
    session = hub.open_session(user_id, conversation_id)
    peer = Peer(user_id=user_id, sink=sink, session=session)
    superseded = hub.registry.register(user_id, peer)
    if superseded is not None:
        superseded.session.detach(superseded.sink)
        spawn(superseded.sink.close(SUPERSEDED, "superseded by a newer connection"))
    context = {"asp": {"user": user_id, "session": session.id}}
    log.info("session opened", extra=context)
    session.attach(sink)
    session.emit(hub.session_event(session))
    stored = await hub.store.load(conversation_id, user_id)
    if stored:
        session.emit(events.history(conversation_id, history_entries(stored)))
    if refused_conversation:
        session.emit(events.error("conversation_not_found", "No such conversation; a new one was started."))
    try:
        with tracing.span("asp.connection", user=user_id, session=session.id):
            await _receive_loop(websocket, peer, hub)
    finally:
        hub.registry.unregister(user_id, peer)
        peer.session.detach(sink)
        log.info("session detached", extra={"asp": {"user": user_id, "session": peer.session.id}})


async def _receive_loop(websocket: WebSocket, peer: Peer, hub: Hub) -> None:
    idle_s = hub.settings.idle_timeout_ms / 1000
    max_bytes = hub.settings.max_message_bytes
    last_frame = time.monotonic()
    while True:
        quiet_since = max(last_frame, peer.session.last_run_end)
        remaining = idle_s - (time.monotonic() - quiet_since)
        if peer.session.run is not None:
            remaining = idle_s
        if remaining <= 0:
            await peer.sink.close(IDLE_TIMEOUT, "idle timeout")
            return
        try:
            async with asyncio.timeout(remaining):
                message = await websocket.receive()
        except TimeoutError:
            continue
        except (WebSocketDisconnect, RuntimeError):
            return
        if message["type"] == "websocket.disconnect":
            return
        last_frame = time.monotonic()
        outcome = parse_frame(message.get("text"), message.get("bytes"), max_bytes)
        if isinstance(outcome, TooLarge):
            await peer.sink.close(MESSAGE_TOO_BIG, "message too big")
            return
        if isinstance(outcome, Rejection):
            peer.session.emit(events.error(outcome.code, outcome.message, message_id=outcome.message_id))
            continue
        await _dispatch(outcome, peer, hub)


async def _dispatch(command: Command, peer: Peer, hub: Hub) -> None:
    session = peer.session
    if command.type == "ping":
        session.emit(events.pong(command.id))
    elif command.type == "message":
        await _start_run(command, peer, hub)
    elif command.type == "cancel":
        _cancel(command, session)
    elif command.type == "resume":
        await _resume(command, peer, hub)


async def _start_run(command: Command, peer: Peer, hub: Hub) -> None:
    session = peer.session
    message_id = command.id or "msg_" + secrets.token_hex(8)
    requested = command.data.get("conversation_id")
    if requested is not None and requested != session.conversation_id:
        session.emit(
            events.error(
                "conversation_not_found", "That conversation is not this session's.", message_id=command.id
            )
        )
        return
    if session.run is not None:
        session.emit(
            events.error(
                "run_in_progress", "A run is active; send after it completes.", message_id=command.id
            )
        )
        return
    wait_ms = await hub.limiter.check(peer.user_id)
    if wait_ms:
        session.emit(
            events.error(
                "rate_limited",
                "Too many messages; retry later.",
                message_id=command.id,
                retry_after_ms=wait_ms,
            )
        )
        return
    if session.run is not None:  # another message started a run while the limiter was consulted
        session.emit(
            events.error(
                "run_in_progress", "A run is active; send after it completes.", message_id=command.id
            )
        )
        return
    peer.sent_message = True
    state = RunState(run_id=new_run_id(), message_id=message_id)
    session.run = state
    session.runs_started += 1
    session.emit(events.run_started(state.run_id, message_id, session.conversation_id))
    state.task = asyncio.create_task(_run(session, state, command.data["content"], hub), name=state.run_id)
    hub.track(state.task)


async def _run(session: Session, state: RunState, prompt: str, hub: Hub) -> None:
    try:
        with tracing.span("asp.run", user=session.user_id, session=session.id, run=state.run_id):
            await execute(session, state, prompt, hub.runs)
    finally:
        session.run = None
        session.last_run_end = time.monotonic()


def _cancel(command: Command, session: Session) -> None:
    state = session.run
    named = command.data.get("run_id")
    if state is None or (named is not None and named != state.run_id):
        session.emit(events.error("no_active_run", "No such run is active.", message_id=command.id))
        return
    state.cancel_requested = True
    if state.cancel is not None:
        state.cancel()


async def _resume(command: Command, peer: Peer, hub: Hub) -> None:
    current = peer.session
    target = hub.sessions.get(command.data["session_id"])
    last_seq: int = command.data["last_seq"]
    refusal: str | None = None
    if peer.sent_message or current.runs_started:
        refusal = "resume must come before any message"
    elif target is None or target.user_id != peer.user_id or target is current:
        refusal = "no such session"  # another user's session is indistinguishable from none (ASP-HIS-005)
    elif not target.can_replay_after(last_seq):
        refusal = "those events are no longer kept"
    if refusal is not None or target is None:
        current.emit(events.error("resume_failed", f"Cannot resume: {refusal}.", message_id=command.id))
        return
    current.emit(events.resumed(target.id, last_seq + 1, target.replay_count_after(last_seq)))
    await current.flush()
    current.detach(peer.sink)
    hub.sessions.sessions.pop(current.id, None)
    await current.close()
    target.attach(peer.sink, after_seq=last_seq)
    peer.session = target
