"""The decision core of one ASP connection: client frames and timers in, effects out. No I/O.

In the manner of websockets' `Protocol` and h11's state tables, every protocol decision the server
makes after the handshake is taken here, from the state below, the input and the time passed in
(`now`, seconds of a monotonic clock). Nothing here reads a clock, touches a socket or a database:
the endpoint (`reference_server/endpoint.py`) carries the returned effects out, in order.

One writer per piece of state: `ConnectionState` and `SessionState` are written only by the
functions of this module. The run task, the delivery pump and the endpoint read them.

Entry points (each returns the effects to carry out):

- `on_frame(conn, text, binary, now)`: one client data frame (message reassembled).
- `on_admission(conn, request, decision, now)`: the rate limiter's answer to `AdmitRun`.
- `on_resume_target(conn, request, target)`: the answer to `FindSession`.
- `on_run_end(session, run_id, outcome, now)`: a run of the session ended (stored already).
- `on_timer(conn, now)`: the deadline from `next_deadline(conn)` passed, or a run ended.
- `on_drain(conn, now)`: the server is shutting down.
- `on_superseded(conn)`: the user's newer connection replaced this one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from reference_server.protocol import events
from reference_server.protocol.effects import (
    AdmitRun,
    BindResumed,
    CancelRun,
    Close,
    Effect,
    FindSession,
    ResumeRequest,
    RunRequest,
    Send,
    StartRun,
    SwitchSession,
)
from reference_server.protocol.inbound import Command, Rejection, TooLarge, parse_frame
from reference_server.protocol.ratelimit import RateDecision
from spec.messages import CloseCodeName, ErrorCode, FinishReason, Usage
from spec.registry import close_code


class CloseReason(enum.Enum):
    """Every close the server makes, with the registry name of its code (ASP-CLS-001).

    tests/server/test_close_codes.py closes a real connection each of these ways and checks the
    code against the close-code table.
    """

    value: CloseCodeName

    UNSUPPORTED_VERSION = "unsupported_version"  # ASP-VER-003
    UNAUTHORIZED = "unauthorized"  # ASP-AUTH-003
    AT_CAPACITY = "try_again_later"  # ASP-LIM-001
    SUPERSEDED = "superseded"  # ASP-DUP-001
    IDLE = "idle_timeout"  # ASP-HB-002
    SLOW_CONSUMER = "slow_consumer"  # ASP-LIM-005
    HEARTBEAT = "heartbeat_timeout"  # ASP-HB-001
    TOO_BIG = "message_too_big"  # ASP-LIM-003
    INVALID_UTF8 = "invalid_payload"  # ASP-TRN-004
    BAD_FRAME = "protocol_error"  # RFC 6455 section 7.4.1 (the WebSocket layer sends it)
    SHUTDOWN = "service_restart"  # ASP-CLS-002
    SERVER_FAULT = "internal_error"  # ASP-CLS-001: an unexpected condition, nothing else

    @property
    def code(self) -> int:
        return close_code(self.value)


def close(reason: CloseReason, text: str) -> Close:
    return Close(reason.code, text)


class Phase(enum.Enum):
    OPEN = "open"
    DRAINING = "draining"  # the server is shutting down: no new run; close when the run ends
    CLOSED = "closed"


@dataclass
class RunSlot:
    """The active run of a session as the protocol sees it."""

    run_id: str
    message_id: str


@dataclass
class SessionState:
    """The protocol state of one session, shared by the connections that carry it in turn."""

    session_id: str
    conversation_id: str
    run: RunSlot | None = None
    runs_started: int = 0
    last_run_end: float | None = None


@dataclass
class ConnectionState:
    """The protocol state of one connection."""

    user_id: str
    session: SessionState
    idle_timeout_s: float
    max_message_bytes: int
    last_data_at: float
    new_run_id: Callable[[], str] = field(repr=False, default=lambda: "run_0")
    new_message_id: Callable[[], str] = field(repr=False, default=lambda: "msg_0")
    phase: Phase = Phase.OPEN
    resumed: bool = False


@dataclass(frozen=True)
class ResumeTarget:
    """What the endpoint found for a resume's session_id (None: no such live session of anyone)."""

    user_id: str
    last_seq: int  # seq of the session's last event
    oldest_kept_seq: int | None  # seq of the oldest event still kept for replay (None: none kept)
    resumable: bool = True  # False once the session has failed for good (its pump died)


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended; its exchange is stored before the core is told (ASP-CLS-005)."""

    finish_reason: FinishReason
    error: ErrorCode | None = None  # model_error, internal_error or shutting_down: the run's error
    usage: Usage | None = None


RUN_ERROR_TEXT: dict[ErrorCode, str] = {
    "model_error": "The model failed to answer.",
    "internal_error": "The server failed while answering.",
    "shutting_down": "The server is shutting down; the run was cut short at the end of the grace period.",
}


def opening(
    session_event: events.Event, history_event: events.Event | None, conversation_refused: bool
) -> list[Effect]:
    """The events every session starts with: session, history when there is one (ASP-SES-005),
    then conversation_not_found when the requested conversation was refused (ASP-SES-006)."""
    effects: list[Effect] = [Send(session_event)]
    if history_event is not None:
        effects.append(Send(history_event))
    if conversation_refused:
        effects.append(
            Send(events.error("conversation_not_found", "No such conversation; a new one was started."))
        )
    return effects


def on_frame(conn: ConnectionState, text: str | None, binary: bytes | None, now: float) -> list[Effect]:
    """One client data frame. Every data frame, valid or not, restarts the idle timer (ASP-HB-003,
    ASP-HB-005); control frames never reach the core."""
    if conn.phase is Phase.CLOSED:
        return []
    conn.last_data_at = now
    parsed = parse_frame(text, binary, conn.max_message_bytes)
    if isinstance(parsed, TooLarge):
        conn.phase = Phase.CLOSED
        return [close(CloseReason.TOO_BIG, "message too big")]
    if isinstance(parsed, Rejection):
        return [Send(events.error(parsed.code, parsed.message, message_id=parsed.message_id))]
    return _on_command(conn, parsed)


def _on_command(conn: ConnectionState, command: Command) -> list[Effect]:
    if command.type == "ping":
        return [Send(events.pong(command.id))]
    if command.type == "message":
        return _on_message(conn, command)
    if command.type == "cancel":
        return _on_cancel(conn, command)
    if command.type == "resume":
        return _on_resume(conn, command)
    return []  # the schema knows no other client type


def _refuse(code: ErrorCode, text: str, command: Command) -> list[Effect]:
    """An error answering a client message: no run_id, the client's id only (ASP-ERR-012)."""
    return [Send(events.error(code, text, message_id=command.id))]


def _on_message(conn: ConnectionState, command: Command) -> list[Effect]:
    """Checks in the order of ASP-LIM-009: schema (done), conversation, run in progress, rate."""
    session = conn.session
    if conn.phase is Phase.DRAINING:
        return _refuse("shutting_down", "The server is shutting down; the message was not run.", command)
    requested = command.data.get("conversation_id")
    if requested is not None and requested != session.conversation_id:
        return _refuse("conversation_not_found", "That conversation is not this session's.", command)
    if session.run is not None:
        return _refuse("run_in_progress", "A run is active; send after it completes.", command)
    return [AdmitRun(RunRequest(client_id=command.id, content=command.data["content"]))]


def on_admission(
    conn: ConnectionState, request: RunRequest, decision: RateDecision, now: float
) -> list[Effect]:
    """The rate limiter's answer: start the run (run_started first, ASP-RUN-001) or refuse it."""
    session = conn.session
    if conn.phase is Phase.CLOSED:
        return []
    if not decision.allowed:
        return [
            Send(
                events.error(
                    "rate_limited",
                    "Too many messages; retry later.",
                    message_id=request.client_id,
                    retry_after_ms=decision.retry_after_ms,
                )
            )
        ]
    if session.run is not None or conn.phase is Phase.DRAINING:  # cannot happen between question and answer
        return [
            Send(
                events.error(
                    "run_in_progress",
                    "A run is active; send after it completes.",
                    message_id=request.client_id,
                )
            )
        ]
    slot = RunSlot(run_id=conn.new_run_id(), message_id=request.client_id or conn.new_message_id())
    session.run = slot
    session.runs_started += 1
    return [
        Send(events.run_started(slot.run_id, slot.message_id, session.conversation_id)),
        StartRun(slot.run_id, slot.message_id, request.content),
    ]


def _on_cancel(conn: ConnectionState, command: Command) -> list[Effect]:
    slot = conn.session.run
    named = command.data.get("run_id")
    if slot is None or (named is not None and named != slot.run_id):
        return _refuse("no_active_run", "No such run is active.", command)
    return [CancelRun(slot.run_id)]


def _on_resume(conn: ConnectionState, command: Command) -> list[Effect]:
    """The refusals that need no lookup (ASP-RES-006); the rest waits for `on_resume_target`."""
    if conn.phase is Phase.DRAINING:
        return _refuse("shutting_down", "The server is shutting down; resume elsewhere.", command)
    session_id: str = command.data["session_id"]
    if conn.resumed:
        return _refuse("resume_failed", "Cannot resume: this connection already resumed.", command)
    if conn.session.runs_started:
        return _refuse("resume_failed", "Cannot resume: a run already started in this session.", command)
    if session_id == conn.session.session_id:
        return _refuse("resume_failed", "Cannot resume: that is this connection's own session.", command)
    last_seq = int(command.data["last_seq"])
    return [FindSession(ResumeRequest(session_id=session_id, last_seq=last_seq, client_id=command.id))]


def on_resume_target(
    conn: ConnectionState, request: ResumeRequest, target: ResumeTarget | None
) -> list[Effect]:
    """Resume, or resume_failed: unknown, another user's (indistinguishable, ASP-HIS-005), failed,
    last_seq beyond the session's last event, or events after last_seq no longer kept (ASP-RES-003)."""
    if conn.phase is Phase.CLOSED:
        return []
    refusal = _resume_refusal(conn, request, target)
    if refusal is not None or target is None:
        return [
            Send(events.error("resume_failed", f"Cannot resume: {refusal}.", message_id=request.client_id))
        ]
    conn.resumed = True
    replay_count = target.last_seq - request.last_seq
    return [
        BindResumed(request.session_id),
        Send(events.resumed(request.session_id, request.last_seq + 1, replay_count)),
        SwitchSession(request.session_id, request.last_seq),
    ]


def _resume_refusal(conn: ConnectionState, request: ResumeRequest, target: ResumeTarget | None) -> str | None:
    if target is None or target.user_id != conn.user_id or not target.resumable:
        return "no such session"
    if request.last_seq > target.last_seq:
        return "last_seq is beyond that session's last event"
    if request.last_seq < target.last_seq and (
        target.oldest_kept_seq is None or target.oldest_kept_seq > request.last_seq + 1
    ):
        return "those events are no longer kept"
    return None


def switched(conn: ConnectionState, session: SessionState) -> None:
    """The endpoint carried out SwitchSession: the connection now carries `session`."""
    conn.session = session


def on_run_end(session: SessionState, run_id: str, outcome: RunOutcome, now: float) -> list[Effect]:
    """A run ended and its exchange is stored: its error (with run_id and message_id, ASP-ERR-013),
    then complete (ASP-RUN-003). The session is free for the next message from here on."""
    slot = session.run
    message_id = slot.message_id if slot is not None and slot.run_id == run_id else None
    effects: list[Effect] = []
    if outcome.error is not None:
        effects.append(
            Send(
                events.error(
                    outcome.error,
                    RUN_ERROR_TEXT.get(outcome.error, "The run failed."),
                    run_id=run_id,
                    message_id=message_id,
                )
            )
        )
    effects.append(Send(events.complete(run_id, outcome.finish_reason, outcome.usage)))
    if slot is not None and slot.run_id == run_id:
        session.run = None
        session.last_run_end = now
    return effects


def idle_deadline(conn: ConnectionState) -> float | None:
    """When the connection is idle for ASP-HB-002: idle_timeout after the later of the last data
    frame and the end of the last run (ASP-HB-006); None while a run is active."""
    if conn.session.run is not None:
        return None
    quiet_since = max(conn.last_data_at, conn.session.last_run_end or conn.last_data_at)
    return quiet_since + conn.idle_timeout_s


def next_deadline(conn: ConnectionState) -> float | None:
    """When `on_timer` has something to decide (None: nothing until the next input or run end)."""
    if conn.phase is Phase.DRAINING:
        return 0.0 if conn.session.run is None else None  # due at once when no run is left
    if conn.phase is Phase.CLOSED:
        return None
    return idle_deadline(conn)


def on_timer(conn: ConnectionState, now: float) -> list[Effect]:
    """Time passed or a run of the connection's session ended."""
    if conn.phase is Phase.DRAINING and conn.session.run is None:
        conn.phase = Phase.CLOSED
        return [close(CloseReason.SHUTDOWN, "server shutting down")]
    deadline = next_deadline(conn)
    if deadline is not None and now >= deadline:
        conn.phase = Phase.CLOSED
        return [close(CloseReason.IDLE, "idle timeout")]
    return []


def on_drain(conn: ConnectionState, now: float) -> list[Effect]:
    """The server is shutting down (ASP-CLS-002, ASP-CLS-005): refuse new runs, let the active one
    end (the server cuts it at the end of the grace period), then close with 1012."""
    if conn.phase is not Phase.OPEN:
        return []
    conn.phase = Phase.DRAINING
    return on_timer(conn, now)


def on_superseded(conn: ConnectionState) -> list[Effect]:
    """The user's newer connection replaced this one (ASP-DUP-001); the session's run goes on."""
    if conn.phase is Phase.CLOSED:
        return []
    conn.phase = Phase.CLOSED
    return [close(CloseReason.SUPERSEDED, "superseded by a newer connection")]
