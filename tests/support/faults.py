"""Deliberately broken ASP servers: the reference server with one requirement broken each.

Most faults are ASGI middleware around the reference app that corrupts, drops, reorders, delays
or injects frames; some announce limits the server does not enforce; some patch the reference
code. `python -m tests.support.broken_server` serves the one named by ASP_FAULT.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]
Message = dict[str, Any]


@dataclass
class Connection:
    """Per-connection state a fault may keep."""

    query: dict[str, str]
    next_seq: int = 0
    renumber: bool = False
    held: list[Event] = field(default_factory=list)
    sent: int = 0


Outgoing = Callable[[Connection, Event], list[Event]]
Incoming = Callable[[Connection, Message], Message | None]


@dataclass(frozen=True)
class Fault:
    name: str
    requirement: str  # the requirement the kit must name
    cases: tuple[str, ...]  # the cases to run against it
    outgoing: Outgoing | None = None  # rewrite server events (list: zero or more events to send)
    incoming: Incoming | None = None  # rewrite client frames (None: swallow)
    announce: dict[str, Any] = field(default_factory=dict)  # session.limits values that lie
    close_codes: dict[int, int | None] = field(default_factory=dict)  # rewrite (None: swallow) server closes
    settings: dict[str, str] = field(default_factory=dict)
    patch: str | None = None  # name of a patch in PATCHES
    binary: bool = False
    reject_before_accept: bool = False
    strict: bool = False


def drop(kind: str) -> Outgoing:
    def rewrite(conn: Connection, event: Event) -> list[Event]:
        if event.get("type") == kind:
            conn.renumber = True
            return []
        return [event]

    return rewrite


def edit(kind: str, change: Callable[[Connection, Event], None]) -> Outgoing:
    def rewrite(conn: Connection, event: Event) -> list[Event]:
        if event.get("type") == kind:
            change(conn, event)
        return [event]

    return rewrite


def _seq_gap(conn: Connection, event: Event) -> list[Event]:
    conn.sent += 1
    if conn.sent == 3:
        conn.renumber = True
        conn.next_seq += 1
    return [event]


def _delta_first(conn: Connection, event: Event) -> list[Event]:
    if event.get("type") == "run_started":
        conn.held.append(event)
        return []
    if event.get("type") == "text_delta" and conn.held:
        started = conn.held.pop()
        return [event, started]
    return [event]


def _event_after_complete(conn: Connection, event: Event) -> list[Event]:
    if event.get("type") == "complete":
        conn.renumber = True
        return [event, {"type": "text_delta", "run_id": event["run_id"], "delta": "late"}]
    return [event]


def _result_before_call(conn: Connection, event: Event) -> list[Event]:
    if event.get("type") == "tool_call":
        conn.held.append(event)
        return []
    if event.get("type") == "tool_result" and conn.held:
        return [event, conn.held.pop()]
    return [event]


def _buffer_text(conn: Connection, event: Event) -> list[Event]:
    if event.get("type") == "text_delta":
        conn.held.append(event)
        return []
    if event.get("type") == "complete":
        held, conn.held = conn.held, []
        return [*held, event]
    return [event]


def _no_error_complete(conn: Connection, event: Event) -> list[Event]:
    if event.get("type") == "complete" and event.get("finish_reason") == "error":
        conn.renumber = True
        return []
    return [event]


def _reasoning(conn: Connection, event: Event) -> list[Event]:
    if event.get("type") == "text_delta" and not conn.sent:
        conn.sent = 1
        return [event, {"type": "reasoning_delta", "run_id": event["run_id"], "delta": "hmm"}]
    return [event]


def _echo_token(conn: Connection, event: Event) -> None:
    event["x-debug-token"] = conn.query.get("token", "")


def _leak(conn: Connection, event: Event) -> None:
    if event.get("code") == "model_error":
        event["message"] = 'Traceback (most recent call last): File "/srv/agent/run.py", line 7: RuntimeError'


def _wrong_code(conn: Connection, event: Event) -> None:
    if event.get("code") == "invalid_message":
        event["code"] = "invalid_json"


def _swallow_cancel(conn: Connection, message: Message) -> Message | None:
    return None if '"cancel"' in (message.get("text") or "") else message


def _swallow_resume(conn: Connection, message: Message) -> Message | None:
    return None if '"resume"' in (message.get("text") or "") else message


def _crash_on_bad_json(conn: Connection, message: Message) -> Message | None:
    text = message.get("text")
    if text is not None:
        try:
            json.loads(text)
        except ValueError:
            return {"type": "fault.close", "code": 1011}
    return message


FAULTS = {
    fault.name: fault
    for fault in [
        Fault("seq_gap", "ASP-ENV-002", ("runs.message_starts_a_run",), outgoing=_seq_gap),
        Fault(
            "delta_before_run_started", "ASP-RUN-001", ("runs.message_starts_a_run",), outgoing=_delta_first
        ),
        Fault(
            "unanswered_tool_call", "ASP-TOOL-002", ("tools.call_and_result",), outgoing=drop("tool_result")
        ),
        Fault(
            "event_after_complete", "ASP-RUN-005", ("runs.unique_run_ids",), outgoing=_event_after_complete
        ),
        Fault(
            "tool_result_before_call",
            "ASP-TOOL-003",
            ("tools.call_and_result",),
            outgoing=_result_before_call,
        ),
        Fault("no_complete_after_error", "ASP-RUN-004", ("runs.model_error",), outgoing=_no_error_complete),
        Fault("auth_wrong_close_code", "ASP-AUTH-003", ("auth",), close_codes={4001: 1008}),
        Fault(
            "auth_refused_before_accept", "ASP-TRN-002", ("auth.missing_token",), reject_before_accept=True
        ),
        Fault(
            "no_connection_limit",
            "ASP-LIM-002",
            ("limits.connection_limit",),
            announce={"max_connections": 3},
        ),
        Fault(
            "no_duplicate_closure",
            "ASP-DUP-001",
            ("duplicates.newer_supersedes_older",),
            close_codes={4002: None},
        ),
        Fault("crash_on_bad_json", "ASP-ERR-002", ("errors.invalid_json",), incoming=_crash_on_bad_json),
        Fault("no_pong", "ASP-MSG-003", ("runs.ping_pong",), outgoing=drop("pong")),
        Fault("ignores_cancel", "ASP-CAN-001", ("runs.cancel",), incoming=_swallow_cancel),
        Fault("broken_resume", "ASP-RES-002", ("resume",), incoming=_swallow_resume),
        Fault(
            "history_missing", "ASP-SES-005", ("session.history_follows_session",), outgoing=drop("history")
        ),
        Fault(
            "token_echoed",
            "ASP-AUTH-007",
            ("handshake.version_selected",),
            outgoing=edit("session", _echo_token),
        ),
        Fault("binary_frames", "ASP-TRN-001", ("handshake.version_selected",), binary=True),
        Fault(
            "error_without_retryable",
            "ASP-ENV-001",
            ("errors.invalid_json",),
            outgoing=edit("error", lambda c, e: e.pop("retryable", None)),
        ),
        Fault(
            "wrong_message_id",
            "ASP-MSG-002",
            ("runs.message_starts_a_run",),
            outgoing=edit("run_started", lambda c, e: e.update(message_id="msg_not_yours")),
        ),
        Fault(
            "no_idle_timeout",
            "ASP-HB-002",
            ("heartbeats.idle_timeout",),
            announce={"idle_timeout_ms": 1000},
            settings={"ASP_IDLE_TIMEOUT_MS": "60000"},
        ),
        Fault(
            "wrong_error_code", "ASP-ERR-004", ("errors.schema_invalid",), outgoing=edit("error", _wrong_code)
        ),
        Fault(
            "no_rate_limit",
            "ASP-LIM-004",
            ("limits.rate_limit",),
            announce={"rate_limit": {"messages": 2, "window_ms": 60000}},
        ),
        Fault(
            "oversize_frames_accepted",
            "ASP-LIM-003",
            ("limits.frame_size",),
            announce={"max_message_bytes": 2048},
        ),
        Fault("leaks_internals", "ASP-ERR-008", ("runs.model_error",), outgoing=edit("error", _leak)),
        Fault("accepts_expired_tokens", "ASP-AUTH-006", ("auth.expired_token",), patch="accept_expired"),
        Fault("accepts_alg_none", "ASP-AUTH-005", ("auth.alg_none",), patch="accept_alg_none"),
        Fault(
            "foreign_conversations_readable",
            "ASP-SES-006",
            ("session.foreign_conversation",),
            patch="any_owner",
        ),
        Fault(
            "buffers_text_until_complete",
            "ASP-RUN-009",
            ("runs.streams_incrementally",),
            outgoing=_buffer_text,
            strict=True,
        ),
        Fault("undeclared_reasoning", "ASP-CAP-002", ("runs.message_starts_a_run",), outgoing=_reasoning),
    ]
}


class FaultMiddleware:
    """Applies one fault to every WebSocket connection of the wrapped ASGI app."""

    def __init__(self, app: Any, fault: Fault) -> None:
        self.app = app
        self.fault = fault

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        from urllib.parse import parse_qsl

        conn = Connection(query=dict(parse_qsl(scope.get("query_string", b"").decode())))
        fault = self.fault
        closed_by_fault = False

        async def faulty_receive() -> Message:
            nonlocal closed_by_fault
            while True:
                message: Message = await receive()
                if (
                    message["type"] == "websocket.connect"
                    and fault.reject_before_accept
                    and not _token_valid(conn)
                ):
                    await send({"type": "websocket.close", "code": 1008})
                    closed_by_fault = True
                    return {"type": "websocket.disconnect", "code": 1008}
                if message["type"] != "websocket.receive" or fault.incoming is None:
                    return message
                changed = fault.incoming(conn, message)
                if changed is None:
                    continue
                if changed["type"] == "fault.close":
                    await send({"type": "websocket.close", "code": changed["code"]})
                    closed_by_fault = True
                    return {"type": "websocket.disconnect", "code": changed["code"]}
                return changed

        async def faulty_send(message: Message) -> None:
            if closed_by_fault and message["type"] in (
                "websocket.send",
                "websocket.close",
                "websocket.accept",
            ):
                return
            if message["type"] == "websocket.close" and message.get("code") in fault.close_codes:
                replacement = fault.close_codes[message["code"]]
                if replacement is None:
                    return
                message = {**message, "code": replacement}
            if message["type"] != "websocket.send" or message.get("text") is None:
                await send(message)
                return
            event = json.loads(message["text"])
            if event.get("type") == "session" and fault.announce:
                event["limits"].update(fault.announce)
            outgoing = fault.outgoing(conn, event) if fault.outgoing else [event]
            for item in outgoing:
                if "seq" not in item:  # an injected event
                    conn.renumber = True
                if conn.renumber:
                    item["seq"] = conn.next_seq + 1
                conn.next_seq = item["seq"]
                text = json.dumps(item)
                if fault.binary:
                    await send({"type": "websocket.send", "bytes": text.encode()})
                else:
                    await send({"type": "websocket.send", "text": text})

        await self.app(scope, faulty_receive, faulty_send)


def _token_valid(conn: Connection) -> bool:
    import os

    from reference_server.auth import AuthError, verify

    try:
        verify(conn.query.get("token"), os.environ["ASP_JWT_SECRET"])
    except AuthError:
        return False
    return True


def apply_patch(name: str) -> None:
    """Break the reference code itself, for faults middleware cannot express."""
    import jwt

    from reference_server import auth, storage

    if name in ("accept_expired", "accept_alg_none"):
        original = auth.verify

        def lenient(token: str | None, secret: str) -> str:
            if token and name == "accept_expired":
                claims = jwt.decode(token, secret, algorithms=["HS256"], options={"verify_exp": False})
                return str(claims["sub"])
            if token and name == "accept_alg_none" and jwt.get_unverified_header(token).get("alg") == "none":
                return str(jwt.decode(token, options={"verify_signature": False})["sub"])
            return original(token, secret)

        auth.verify = lenient
        import reference_server.endpoint as endpoint

        endpoint.verify = lenient  # type: ignore[attr-defined]
    elif name == "any_owner":

        async def owned(self: Any, conversation_id: str, user_id: str) -> bool:
            return True

        async def load(self: Any, conversation_id: str, user_id: str) -> list[Any]:
            from sqlalchemy import select

            from reference_server.storage import Conversation, ModelMessagesTypeAdapter

            async with self._sessions() as session:
                raw = await session.scalar(
                    select(Conversation.messages_json).where(Conversation.id == conversation_id)
                )
            return list(ModelMessagesTypeAdapter.validate_json(raw)) if raw else []

        storage.ConversationStore.owned = owned  # type: ignore[method-assign]
        storage.ConversationStore.load = load  # type: ignore[method-assign]
    else:
        raise KeyError(name)
