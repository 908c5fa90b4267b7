"""Deliberately broken ASP servers: the reference server with one requirement broken each.

Almost every fault is ASGI middleware around the reference app that corrupts, drops, reorders,
delays or injects frames, rewrites the handshake, lies in its announcement or answers in the
server's stead; one patches the reference code. `python -m tests.support.broken_server` serves
either the fault named by ASP_FAULT, or (ASP_FAULT=panel) every middleware fault at once, each at
its own path `/fault/<name>/<endpoint path>`, so the self-test panel needs one server process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jwt

from spec.schemas import check_client_message

Event = dict[str, Any]
Message = dict[str, Any]
PANEL_PREFIX = "/fault/"


@dataclass
class Shared:
    """State a fault keeps across the connections of one server."""

    failed_contents: set[str] = field(default_factory=set)
    live_users: dict[str, int] = field(default_factory=dict)
    live: int = 0  # connections served now (cap_connections)
    messages: dict[str, int] = field(default_factory=dict)  # message frames per user


@dataclass
class Connection:
    """Per-connection state a fault may keep."""

    query: dict[str, str]
    shared: Shared
    next_seq: int = 0
    renumber: bool = False
    held: list[Event] = field(default_factory=list)
    sent: int = 0
    messages: int = 0
    last_content: str = ""
    last_client_frame: float = field(default_factory=time.monotonic)
    replies: list[Event] = field(default_factory=list)  # events an incoming hook answers with
    run_active: bool = False  # between a run_started and its complete, as sent


Outgoing = Callable[[Connection, Event], list[Event]]
Incoming = Callable[[Connection, Message], Message | None]
ScopeRewrite = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Fault:
    name: str
    requirements: tuple[str, ...]  # every one of them the kit must name
    cases: tuple[str, ...]  # the cases to run against it
    outgoing: Outgoing | None = None  # rewrite server events (list: zero or more events to send)
    incoming: Incoming | None = None  # rewrite client frames (None: swallow; conn.replies: answer)
    announce: dict[str, Any] = field(default_factory=dict)  # session.limits values that lie
    close_codes: dict[int, int | None] = field(default_factory=dict)  # rewrite (None: swallow) server closes
    # a server close with one of these codes is not sent: the app is stopped and the transport
    # closed under it, so the client sees no close frame (1006)
    drop_on_close: tuple[int, ...] = ()
    scope: ScopeRewrite | None = None  # rewrite the handshake the app sees
    settings: dict[str, str] = field(default_factory=dict)  # needs a server of its own
    patch: str | None = None  # name of a patch in PATCHES (needs a server of its own)
    binary: bool = False
    reject_before_accept: bool = False
    supersede_newer: bool = False  # a user's newer connection is closed 4002, the older kept
    idle_close_s: float | None = None  # close 4003 this long after the last client frame, runs or not
    accept: Callable[[list[str], str | None], str | None] | None = None  # rewrite the selected subprotocol
    auth_first: bool = False  # an invalid token is refused (4001) before the version is looked at
    cap_connections: int | None = None  # beyond this many live connections 1013, superseding or not
    strict: bool = False
    check: dict[str, Any] = field(default_factory=dict)  # CheckOptions the kit needs to catch it
    not_named: tuple[str, ...] = ()  # requirements the kit must not blame (symptoms of the fault)
    also_pass: tuple[str, ...] = ()  # cases that must still pass: the fault blocks nothing else

    @property
    def own_process(self) -> bool:
        return bool(self.settings or self.patch)


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


def _second_complete_after_cancel(conn: Connection, event: Event) -> list[Event]:
    if event.get("type") == "complete" and event.get("finish_reason") == "cancelled":
        conn.renumber = True
        return [event, {k: v for k, v in event.items() if k != "seq"}]
    return [event]


def _result_before_call(conn: Connection, event: Event) -> list[Event]:
    if event.get("type") == "tool_call":
        conn.held.append(event)
        return []
    if event.get("type") == "tool_result" and conn.held:
        return [event, conn.held.pop()]
    return [event]


def _buffer_text(conn: Connection, event: Event) -> list[Event]:
    """Holds every text delta back until the run's complete (misses only the SHOULD ASP-RUN-009)."""
    conn.renumber = True  # the held deltas go out after later events: number in sending order
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


def _pad_past_max_event_bytes(conn: Connection, event: Event) -> None:
    event["x-pad"] = "x" * 70_000  # past the 65536 bytes the fault announces


def _newline_in_run_ids(conn: Connection, event: Event) -> list[Event]:
    if isinstance(event.get("run_id"), str):
        event["run_id"] += "\n"
    return [event]


def _no_tool_entries(conn: Connection, event: Event) -> list[Event]:
    if event.get("type") == "history":
        event["messages"] = [m for m in event["messages"] if m.get("role") != "tool"]
        if not event["messages"]:
            conn.renumber = True
            return []
    return [event]


def _tool_entries_last(conn: Connection, event: Event) -> None:
    """Stores each run's tool entries after its text, whatever order they were produced in."""
    if event.get("type") != "history":
        return
    order = {"user": 0, "assistant": 1, "tool": 2}
    runs: list[str] = []
    for entry in event["messages"]:
        if entry.get("run_id") not in runs:
            runs.append(entry.get("run_id"))
    event["messages"] = sorted(
        event["messages"], key=lambda e: (runs.index(e.get("run_id")), order.get(e.get("role"), 3))
    )


def _user_entries_without_message_id(conn: Connection, event: Event) -> None:
    if event.get("type") == "history":
        for entry in event["messages"]:
            if entry.get("role") == "user":
                entry.pop("message_id", None)


def _forget_failed_runs(conn: Connection, event: Event) -> list[Event]:
    """Exchanges whose run ended in error are left out of the stored conversation."""
    if event.get("type") == "complete" and event.get("finish_reason") == "error":
        conn.shared.failed_contents.add(conn.last_content)
    if event.get("type") == "history":
        kept: list[Event] = []
        skipping = False
        for entry in event["messages"]:
            if entry.get("role") == "user":
                skipping = entry.get("content") in conn.shared.failed_contents
            if not skipping:
                kept.append(entry)
        event["messages"] = kept
        if not kept:
            conn.renumber = True
            return []
    return [event]


def _echo_token(conn: Connection, event: Event) -> None:
    event["x-debug-token"] = conn.query.get("token", "")


def _leak(conn: Connection, event: Event) -> None:
    if event.get("code") == "model_error":
        event["message"] = 'Traceback (most recent call last): File "/srv/agent/run.py", line 7: RuntimeError'


def _wrong_code(conn: Connection, event: Event) -> None:
    if event.get("code") == "invalid_message":
        event["code"] = "invalid_json"


def _newline_in_version(conn: Connection, event: Event) -> None:
    event["protocol_version"] = str(event["protocol_version"]) + "\n"


def _no_subprotocol_unless_v1(offered: list[str], selected: str | None) -> str | None:
    """Selects asp.v1 when offered and nothing else: a refused version gets no subprotocol."""
    return selected if selected == "asp.v1" else None


# Errors answering a client frame (ASP-ERR-012), as the registry names them.
ANSWER_CODES = ("invalid_json", "invalid_message", "unknown_type", "no_active_run")


def _mint_message_id(conn: Connection, event: Event) -> None:
    if event.get("code") in ANSWER_CODES and "message_id" not in event:
        event["message_id"] = "msg_minted_by_the_server"


def _drop_model_error_message_id(conn: Connection, event: Event) -> None:
    if event.get("code") == "model_error":
        event.pop("message_id", None)


def _count_characters(limit: int) -> Incoming:
    """Enforces max_message_bytes on characters instead of bytes (multi-byte text slips through)."""

    def hook(conn: Connection, message: Message) -> Message | None:
        text = message.get("text")
        if text is not None and len(text) > limit:
            return {"type": "fault.close", "code": 1009}
        return message

    return hook


def _frame(message: Message) -> dict[str, Any] | None:
    try:
        parsed = json.loads(message.get("text") or "")
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _swallow_cancel(conn: Connection, message: Message) -> Message | None:
    return None if '"cancel"' in (message.get("text") or "") else message


def _swallow_resume(conn: Connection, message: Message) -> Message | None:
    return None if '"resume"' in (message.get("text") or "") else message


def _cancel_whatever_named(conn: Connection, message: Message) -> Message | None:
    """A cancel stops the active run whatever run it names."""
    frame = _frame(message)
    if frame is not None and frame.get("type") == "cancel" and "run_id" in frame:
        frame.pop("run_id")
        return {**message, "text": json.dumps(frame)}
    return message


def _rate_limit_per_connection(limit: int) -> Incoming:
    """Counts the messages that start runs per connection (the spec counts them per user)."""

    def hook(conn: Connection, message: Message) -> Message | None:
        frame = _frame(message)
        if frame is None or frame.get("type") != "message" or check_client_message(frame) or conn.run_active:
            return message
        conn.messages += 1
        if conn.messages <= limit:
            return message
        refusal: Event = {
            "type": "error",
            "code": "rate_limited",
            "message": "Too many messages on this connection.",
            "retryable": True,
            "retry_after_ms": 1000,
        }
        if isinstance(frame.get("id"), str):
            refusal["message_id"] = frame["id"]
        conn.replies.append(refusal)
        return None

    return hook


def _resume_only_first(conn: Connection, message: Message) -> Message | None:
    """A resume is refused after any earlier frame but pings (the server reads ASP-RES-002's "after a
    message" as any frame, refused ones included)."""
    frame = _frame(message)
    kind = frame.get("type") if frame is not None else None
    if kind == "resume" and conn.messages:
        refusal: Event = {
            "type": "error",
            "code": "resume_failed",
            "message": "This connection already sent messages.",
            "retryable": False,
        }
        if frame is not None and isinstance(frame.get("id"), str):
            refusal["message_id"] = frame["id"]
        conn.replies.append(refusal)
        return None
    if kind not in ("ping", "resume"):
        conn.messages += 1
    return message


def _rate_limit_counting_every_message(limit: int) -> Incoming:
    """Counts every message frame of a user, invalid ones included, against the rate limit (the
    spec counts only messages that start a run); never forgets (a window longer than any check)."""

    def hook(conn: Connection, message: Message) -> Message | None:
        frame = _frame(message)
        if frame is None or frame.get("type") != "message":
            return message
        user = _token_subject(conn.query.get("token")) or ""
        counted = conn.shared.messages.get(user, 0) + 1
        conn.shared.messages[user] = counted
        if counted <= limit:
            return message
        refusal: Event = {
            "type": "error",
            "code": "rate_limited",
            "message": "Too many messages.",
            "retryable": True,
            "retry_after_ms": 60000,
        }
        if isinstance(frame.get("id"), str):
            refusal["message_id"] = frame["id"]
        conn.replies.append(refusal)
        return None

    return hook


def _omit_oversized_entries(conn: Connection, event: Event) -> None:
    """History leaves out an entry too large alone, and every older one, instead of shortening it
    (the spec shortens it into the room the newer entries leave, ASP-LIM-011)."""
    entries = event.get("messages", [])
    cut = max((i + 1 for i, m in enumerate(entries) if m.get("truncated") is True), default=0)
    if cut:
        event["messages"] = entries[cut:]
        event["truncated"] = True
        event["omitted"] = int(event.get("omitted", 0)) + cut


def _early_retry(conn: Connection, event: Event) -> None:
    """retry_after_ms a tenth of the truth: a message sent after it is still refused (ASP-LIM-009)."""
    if event.get("code") == "rate_limited" and isinstance(event.get("retry_after_ms"), int):
        event["retry_after_ms"] = max(1, event["retry_after_ms"] // 10)


def _crash_on_bad_json(conn: Connection, message: Message) -> Message | None:
    text = message.get("text")
    if text is not None:
        try:
            json.loads(text)
        except ValueError:
            return {"type": "fault.close", "code": 1011}
    return message


def _no_query_token(scope: dict[str, Any]) -> None:
    query = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode()) if k != "token"]
    scope["query_string"] = urlencode(query).encode()


def _no_subprotocol_token(scope: dict[str, Any]) -> None:
    scope["subprotocols"] = [p for p in scope.get("subprotocols", []) if not p.startswith("asp.token.")]


def _query_token_wins(scope: dict[str, Any]) -> None:
    """A query token, when there is one, counts: an asp.token. subprotocol beside it is dropped."""
    if dict(parse_qsl(scope.get("query_string", b"").decode())).get("token"):
        _no_subprotocol_token(scope)


def _conversation_query(change: Callable[[str | None], str | None]) -> ScopeRewrite:
    """Rewrite the conversation_id query parameter (None: absent) before the app sees it."""

    def rewrite(scope: dict[str, Any]) -> None:
        query = parse_qsl(scope.get("query_string", b"").decode(), keep_blank_values=True)
        given = dict(query).get("conversation_id")
        chosen = change(given)
        kept = [(k, v) for k, v in query if k != "conversation_id"]
        if chosen is not None:
            kept.append(("conversation_id", chosen))
        scope["query_string"] = urlencode(kept).encode()

    return rewrite


def _honour(kind: str) -> ScopeRewrite:
    """Accept tokens the reference server refuses (expired, alg none, an nbf in the future, or
    signed with the secret under HS512 while it is configured for HS256) by re-signing them."""

    def rewrite(scope: dict[str, Any]) -> None:
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        token = query.get("token")
        if not token:
            return
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
        except jwt.InvalidTokenError:
            return
        expired = isinstance(claims.get("exp"), int) and claims["exp"] < time.time()
        early = isinstance(claims.get("nbf"), int) and claims["nbf"] > time.time()
        if (
            (kind == "expired" and expired and header.get("alg") == "HS256")
            or (kind == "alg_none" and header.get("alg") == "none")
            or (kind == "nbf" and early and header.get("alg") == "HS256")
            or (kind == "hs512" and header.get("alg") == "HS512")
        ):
            secret = os.environ["ASP_JWT_SECRET"]
            if kind in ("expired", "nbf", "hs512"):
                try:
                    jwt.decode(
                        token,
                        secret,
                        algorithms=[header["alg"]],
                        options={"verify_exp": False, "verify_nbf": False},
                    )
                except jwt.InvalidTokenError:
                    return  # forged, not just expired or early
            fresh = {k: v for k, v in claims.items() if k != "nbf"} | {"exp": int(time.time()) + 600}
            query["token"] = jwt.encode(fresh, secret, algorithm="HS256")
            scope["query_string"] = urlencode(query).encode()

    return rewrite


FAULTS = {
    fault.name: fault
    for fault in [
        Fault("seq_gap", ("ASP-ENV-002",), ("runs.message_starts_a_run",), outgoing=_seq_gap),
        Fault(
            "delta_before_run_started",
            ("ASP-RUN-001",),
            ("runs.message_starts_a_run",),
            outgoing=_delta_first,
        ),
        Fault(
            "unanswered_tool_call",
            ("ASP-TOOL-002",),
            ("tools.call_and_result",),
            outgoing=drop("tool_result"),
        ),
        Fault(
            "event_after_complete", ("ASP-RUN-005",), ("runs.unique_run_ids",), outgoing=_event_after_complete
        ),
        Fault(
            "second_complete_after_cancel",
            ("ASP-RUN-005",),
            ("runs.cancel",),
            outgoing=_second_complete_after_cancel,
        ),
        Fault(
            "tool_result_before_call",
            ("ASP-TOOL-003",),
            ("tools.call_and_result",),
            outgoing=_result_before_call,
        ),
        Fault(
            "no_complete_after_error", ("ASP-RUN-004",), ("runs.model_error",), outgoing=_no_error_complete
        ),
        Fault(
            "never_completes",
            ("ASP-RUN-004",),
            ("runs.deltas_rebuild_the_text", "tools.call_and_result"),
            outgoing=drop("complete"),
            not_named=("ASP-RUN-006", "ASP-TOOL-001"),
        ),
        Fault("auth_wrong_close_code", ("ASP-AUTH-003",), ("auth",), close_codes={4001: 1008}),
        Fault(
            "auth_dropped",
            ("ASP-AUTH-003",),
            ("auth.missing_token", "auth.garbage_token"),
            drop_on_close=(4001,),
        ),
        Fault(
            "auth_refused_before_accept",
            ("ASP-TRN-002",),
            ("auth.missing_token",),
            reject_before_accept=True,
        ),
        Fault(
            "query_token_ignored",
            ("ASP-AUTH-001",),
            ("auth.query_token", "runs.message_starts_a_run", "handshake.version_selected"),
            scope=_no_query_token,
            also_pass=("runs.message_starts_a_run", "handshake.version_selected"),
        ),
        Fault(
            "subprotocol_token_refused",
            ("ASP-AUTH-002",),
            ("handshake.token_subprotocol_never_selected", "auth.query_token"),
            scope=_no_subprotocol_token,
            not_named=("ASP-SES-001",),
            also_pass=("auth.query_token",),
        ),
        Fault(
            "no_connection_limit",
            ("ASP-LIM-002",),
            ("limits.connection_limit",),
            announce={"max_connections": 3},
        ),
        Fault(
            "no_duplicate_closure",
            ("ASP-DUP-001",),
            ("duplicates.newer_supersedes_older",),
            close_codes={4002: None},
        ),
        Fault(
            "superseded_dropped",
            ("ASP-DUP-001",),
            ("duplicates.newer_supersedes_older",),
            drop_on_close=(4002,),
        ),
        Fault(
            "superseded_closes_normally",
            ("ASP-DUP-001",),
            ("duplicates.newer_supersedes_older",),
            close_codes={4002: 1000},
        ),
        Fault(
            "duplicate_closes_newer",
            ("ASP-DUP-001", "ASP-DUP-002"),
            ("duplicates.newer_supersedes_older",),
            supersede_newer=True,
            not_named=("ASP-SES-001",),
        ),
        Fault("crash_on_bad_json", ("ASP-ERR-002",), ("errors.invalid_json",), incoming=_crash_on_bad_json),
        Fault("no_pong", ("ASP-MSG-003",), ("runs.ping_pong",), outgoing=drop("pong")),
        Fault("ignores_cancel", ("ASP-CAN-001",), ("runs.cancel",), incoming=_swallow_cancel),
        Fault(
            "cancel_ignores_run_id",
            ("ASP-CAN-002",),
            ("runs.cancel_names_another_run",),
            incoming=_cancel_whatever_named,
        ),
        Fault(
            "broken_resume",
            ("ASP-RES-002",),
            ("resume.refused_for_unknown_sessions",),
            incoming=_swallow_resume,
        ),
        Fault(
            "history_missing",
            ("ASP-SES-005",),
            ("session.history_follows_session",),
            outgoing=drop("history"),
        ),
        Fault(
            "tool_calls_not_stored",
            ("ASP-HIS-001",),
            ("tools.call_and_result",),
            outgoing=_no_tool_entries,
        ),
        Fault(
            "failed_runs_not_stored",
            ("ASP-HIS-001",),
            ("runs.model_error",),
            outgoing=_forget_failed_runs,
        ),
        Fault(
            "token_echoed",
            ("ASP-AUTH-007",),
            ("handshake.version_selected",),
            outgoing=edit("session", _echo_token),
        ),
        Fault("binary_frames", ("ASP-TRN-001",), ("handshake.version_selected",), binary=True),
        Fault(
            "error_without_retryable",
            ("ASP-ENV-001",),
            ("errors.invalid_json",),
            outgoing=edit("error", lambda c, e: e.pop("retryable", None)),
        ),
        Fault(
            "run_id_ends_in_newline",
            ("ASP-ENV-001",),
            ("runs.message_starts_a_run",),
            outgoing=_newline_in_run_ids,
        ),
        Fault(
            "protocol_version_ends_in_newline",
            ("ASP-ENV-001",),
            ("handshake.version_selected",),
            outgoing=edit("session", _newline_in_version),
        ),
        Fault(
            "wrong_message_id",
            ("ASP-MSG-002",),
            ("runs.message_starts_a_run",),
            outgoing=edit("run_started", lambda c, e: e.update(message_id="msg_not_yours")),
        ),
        Fault(
            "no_idle_timeout",
            ("ASP-HB-002",),
            ("heartbeats.idle_timeout",),
            announce={"idle_timeout_ms": 1000},
            settings={"ASP_IDLE_TIMEOUT_MS": "60000"},
        ),
        Fault(
            "idle_timer_during_runs",
            ("ASP-HB-002",),
            ("heartbeats.no_idle_close_during_run",),
            idle_close_s=2.0,
            announce={"idle_timeout_ms": 2000},
        ),
        Fault(
            "wrong_error_code",
            ("ASP-ERR-004",),
            ("errors.schema_invalid",),
            outgoing=edit("error", _wrong_code),
        ),
        Fault(
            "no_rate_limit",
            ("ASP-LIM-004",),
            ("limits.rate_limit",),
            announce={"rate_limit": {"messages": 2, "window_ms": 60000}},
        ),
        Fault(
            "rate_limit_per_connection",
            ("ASP-LIM-004",),
            ("limits.rate_limit",),
            announce={"rate_limit": {"messages": 3, "window_ms": 60000}},
            incoming=_rate_limit_per_connection(3),
        ),
        Fault(
            "oversize_frames_accepted",
            ("ASP-LIM-003",),
            ("limits.frame_size",),
            announce={"max_message_bytes": 2048},
        ),
        Fault("leaks_internals", ("ASP-ERR-008",), ("runs.model_error",), outgoing=edit("error", _leak)),
        Fault("accepts_expired_tokens", ("ASP-AUTH-006",), ("auth.expired_token",), scope=_honour("expired")),
        Fault("accepts_alg_none", ("ASP-AUTH-005",), ("auth.alg_none",), scope=_honour("alg_none")),
        Fault(
            "foreign_conversations_readable",
            ("ASP-SES-006",),
            ("session.foreign_conversation",),
            patch="any_owner",
        ),
        Fault(
            "buffers_text_until_complete",
            ("ASP-RUN-009",),
            ("runs.streams_incrementally",),
            outgoing=_buffer_text,
            strict=True,
        ),
        Fault(
            "refused_version_selects_nothing",
            ("ASP-VER-006",),
            ("handshake.unsupported_version", "handshake.version_selected"),
            accept=_no_subprotocol_unless_v1,
            also_pass=("handshake.version_selected",),
        ),
        Fault(
            "answer_errors_mint_message_ids",
            ("ASP-ERR-012",),
            ("errors.schema_invalid", "errors.invalid_json"),
            outgoing=edit("error", _mint_message_id),
        ),
        Fault(
            "run_error_without_message_id",
            ("ASP-ERR-013",),
            ("runs.model_error",),
            outgoing=edit("error", _drop_model_error_message_id),
        ),
        Fault(
            "auth_query_token_wins",
            ("ASP-AUTH-010",),
            ("auth.subprotocol_token_counts", "auth.query_token"),
            scope=_query_token_wins,
            also_pass=("auth.query_token",),
        ),
        Fault("accepts_future_nbf", ("ASP-AUTH-012",), ("auth.bad_claims",), scope=_honour("nbf")),
        Fault(
            "accepts_unconfigured_alg",
            ("ASP-AUTH-012",),
            ("auth.unconfigured_alg",),
            scope=_honour("hs512"),
            check={"jwt_algorithms": ["HS256"]},
        ),
        Fault(
            "invalid_utf8_replaced",
            ("ASP-TRN-004",),
            ("errors.invalid_utf8", "errors.invalid_json"),
            patch="utf8_replace",
            also_pass=("errors.invalid_json",),
        ),
        Fault(
            "message_limit_counts_characters",
            ("ASP-LIM-010",),
            ("limits.frame_size",),
            announce={"max_message_bytes": 2048},
            incoming=_count_characters(2048),
        ),
        Fault(
            "new_ignored",
            ("ASP-SES-007",),
            ("session.new_conversation",),
            scope=_conversation_query(lambda given: None if given == "new" else given),
        ),
        Fault(
            "named_conversation_not_bound",
            ("ASP-SES-008",),
            ("session.history_follows_session",),
            scope=_conversation_query(lambda given: "new" if given else given),
        ),
        Fault(
            "plain_reconnect_starts_new",
            ("ASP-SES-009",),
            ("session.last_bound_conversation",),
            scope=_conversation_query(lambda given: "new" if given is None else given),
        ),
        Fault(
            "empty_conversation_id_ignored",
            ("ASP-SES-010",),
            ("session.malformed_conversation_id",),
            scope=_conversation_query(lambda given: None if given == "" else given),
        ),
        Fault(
            "idle_counts_from_last_frame",
            ("ASP-HB-006",),
            ("heartbeats.idle_counts_from_run_end",),
            patch="idle_from_last_frame",
            # the case allows a close 0.1 x idle late (its trip here): 100 ms of the panel's 1 s
            # idle timeout was less than a loaded host's delay, and the kit passed this server
            settings={"ASP_IDLE_TIMEOUT_MS": "4000"},
        ),
        Fault(
            "control_frames_restart_idle_timer",
            ("ASP-HB-005",),
            ("heartbeats.control_frames_do_not_count", "heartbeats.idle_timeout"),
            patch="control_frames_are_activity",
            also_pass=("heartbeats.idle_timeout",),
        ),
        Fault(
            "authenticates_before_version",
            ("ASP-TRN-005",),
            ("handshake.unsupported_version", "auth.missing_token"),
            auth_first=True,
            also_pass=("auth.missing_token",),
        ),
        Fault(
            "superseding_connection_refused_at_limit",
            ("ASP-LIM-007",),
            ("limits.connection_limit",),
            announce={"max_connections": 3},
            cap_connections=3,
        ),
        Fault(
            # At a limit of one, a user's second connection is the superseding one: refused 1013 it
            # breaks ASP-LIM-007, not ASP-DUP-002 (the server did not serve it otherwise than a full
            # server may, but a superseding connection takes the slot it frees).
            "superseding_connection_refused_at_limit_of_one",
            ("ASP-LIM-007",),
            ("duplicates.newer_supersedes_older",),
            announce={"max_connections": 1},
            cap_connections=1,
            not_named=("ASP-DUP-002",),
        ),
        Fault(
            "history_tool_entries_last",
            ("ASP-HIS-008",),
            ("history.layout",),
            outgoing=edit("history", _tool_entries_last),
        ),
        Fault(
            "history_user_entries_unnamed",
            ("ASP-HIS-009",),
            ("history.layout",),
            outgoing=edit("history", _user_entries_without_message_id),
        ),
        Fault(
            "resume_refused_after_bad_frames",
            ("ASP-RES-006",),
            ("resume.what_a_resume_may_name", "resume.replays_then_continues"),
            incoming=_resume_only_first,
            also_pass=("resume.replays_then_continues",),
        ),
        Fault(
            "events_over_max_event_bytes",
            ("ASP-LIM-011",),
            ("limits.event_size",),
            announce={"max_event_bytes": 65536},
        ),
        Fault(
            # a run's text_delta padded past the announced limit: the oracle catches it in any case
            "text_delta_over_max_event_bytes",
            ("ASP-LIM-011",),
            ("runs.message_starts_a_run",),
            outgoing=edit("text_delta", _pad_past_max_event_bytes),
            announce={"max_event_bytes": 65536},
        ),
        Fault(
            "history_omits_entry_too_large_alone",
            ("ASP-LIM-011",),
            ("limits.event_size",),
            outgoing=edit("history", _omit_oversized_entries),
        ),
        Fault(
            "retry_after_ms_too_short",
            ("ASP-LIM-009",),
            ("limits.rate_limit",),
            outgoing=edit("error", _early_retry),
            # a window that fits --max-wait, so the kit waits out retry_after_ms and sends again
            settings={"ASP_RATE_LIMIT_MESSAGES": "2", "ASP_RATE_LIMIT_WINDOW_MS": "4000"},
            not_named=("ASP-LIM-004",),
        ),
        Fault(
            "rate_limit_counts_invalid_messages",
            ("ASP-LIM-009",),
            ("limits.rate_limit",),
            announce={"rate_limit": {"messages": 3, "window_ms": 60000}},
            incoming=_rate_limit_counting_every_message(3),
        ),
        Fault("undeclared_reasoning", ("ASP-CAP-002",), ("runs.message_starts_a_run",), outgoing=_reasoning),
    ]
}


def _announce_1_0(conn: Connection, event: Event) -> None:
    event["protocol_version"] = "1.0"
    event["limits"].pop("max_event_bytes", None)


# Legal servers the panel also serves (at /fault/<name>/...): not faults, variants the kit must pass.
VARIANTS = {
    variant.name: variant
    for variant in [
        # The reference server presenting itself as a 1.0 server: 1.1 requirements do not apply.
        Fault("announces_1_0", (), (), outgoing=edit("session", _announce_1_0)),
    ]
}


class FaultMiddleware:
    """Applies one fault to every WebSocket connection of the wrapped ASGI app."""

    def __init__(self, app: Any, fault: Fault) -> None:
        self.app = app
        self.fault = fault
        self.shared = Shared()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        fault = self.fault
        if fault.scope is not None:
            scope = {**scope}
            fault.scope(scope)
        conn = Connection(query=dict(parse_qsl(scope.get("query_string", b"").decode())), shared=self.shared)
        if fault.auth_first and not _token_valid(conn):
            await _refuse(scope, receive, send, 4001)
            return
        if fault.cap_connections is not None:
            if self.shared.live >= fault.cap_connections:
                await _refuse(scope, receive, send, 1013)
                return
            self.shared.live += 1
            try:
                await self._serve(scope, receive, send, conn)
            finally:
                self.shared.live -= 1
            return
        if fault.supersede_newer:
            await self._supersede_newer(scope, receive, send, conn)
            return
        await self._serve(scope, receive, send, conn)

    async def _supersede_newer(
        self, scope: dict[str, Any], receive: Any, send: Any, conn: Connection
    ) -> None:
        """A user's newer connection is closed with 4002 and never reaches the app; the older stays."""
        user = _subject(scope)
        live = self.shared.live_users
        if user is not None and live.get(user):
            await receive()  # websocket.connect
            offered = scope.get("subprotocols") or []
            await send({"type": "websocket.accept", "subprotocol": "asp.v1" if "asp.v1" in offered else None})
            await send({"type": "websocket.close", "code": 4002, "reason": "superseded"})
            return
        if user is not None:
            live[user] = live.get(user, 0) + 1
        try:
            await self._serve(scope, receive, send, conn)
        finally:
            if user is not None:
                live[user] -= 1

    async def _serve(self, scope: dict[str, Any], receive: Any, send: Any, conn: Connection) -> None:
        fault = self.fault
        closed_by_fault = False
        dropped = asyncio.Event()  # a close of drop_on_close: the app is stopped, no close frame

        async def send_event(item: Event) -> None:
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

        async def close_as_fault(code: int) -> Message:
            nonlocal closed_by_fault
            await send({"type": "websocket.close", "code": code})
            closed_by_fault = True
            return {"type": "websocket.disconnect", "code": code}

        async def next_message() -> Message:
            if fault.idle_close_s is None:
                return await receive()  # type: ignore[no-any-return]
            try:
                async with asyncio.timeout_at(
                    asyncio.get_running_loop().time()
                    + fault.idle_close_s
                    - (time.monotonic() - conn.last_client_frame)
                ):
                    return await receive()  # type: ignore[no-any-return]
            except TimeoutError:
                return {"type": "fault.idle"}

        async def faulty_receive() -> Message:
            while True:
                message = await next_message()
                if message["type"] == "fault.idle":
                    return await close_as_fault(4003)
                if message["type"] == "websocket.receive":
                    conn.last_client_frame = time.monotonic()
                    frame = _frame(message)
                    if frame is not None and frame.get("type") == "message":
                        conn.last_content = str(frame.get("content", ""))
                if (
                    message["type"] == "websocket.connect"
                    and fault.reject_before_accept
                    and not _token_valid(conn)
                ):
                    return await close_as_fault(1008)
                if message["type"] != "websocket.receive" or fault.incoming is None:
                    return message
                changed = fault.incoming(conn, message)
                for reply in conn.replies:
                    await send_event(reply)
                conn.replies.clear()
                if changed is None:
                    continue
                if changed["type"] == "fault.close":
                    return await close_as_fault(changed["code"])
                return changed

        async def faulty_send(message: Message) -> None:
            if closed_by_fault and message["type"] in (
                "websocket.send",
                "websocket.close",
                "websocket.accept",
            ):
                return
            if message["type"] == "websocket.accept" and fault.accept is not None:
                offered = [str(p) for p in scope.get("subprotocols") or []]
                message = {**message, "subprotocol": fault.accept(offered, message.get("subprotocol"))}
            if message["type"] == "websocket.close" and message.get("code") in fault.drop_on_close:
                dropped.set()
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
            if event.get("type") in ("run_started", "complete"):
                conn.run_active = event["type"] == "run_started"
            if event.get("type") == "session" and fault.announce:
                event["limits"].update(fault.announce)
            outgoing = fault.outgoing(conn, event) if fault.outgoing else [event]
            for item in outgoing:
                await send_event(item)

        if not fault.drop_on_close:
            await self.app(scope, faulty_receive, faulty_send)
            return
        app = asyncio.ensure_future(self.app(scope, faulty_receive, faulty_send))
        drop = asyncio.ensure_future(dropped.wait())
        await asyncio.wait([app, drop], return_when=asyncio.FIRST_COMPLETED)
        drop.cancel()
        if not app.done():  # returning closes the transport without a close frame
            app.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await app


class PanelMiddleware:
    """Every fault that needs no server of its own, each at `/fault/<name>/...` of one app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        served = {**FAULTS, **VARIANTS}
        self.faults = {
            name: FaultMiddleware(app, fault) for name, fault in served.items() if not fault.own_process
        }

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "websocket" and path.startswith(PANEL_PREFIX):
            name, _, rest = path[len(PANEL_PREFIX) :].partition("/")
            if name in self.faults:
                inner = {**scope, "path": "/" + rest, "raw_path": ("/" + rest).encode()}
                await self.faults[name](inner, receive, send)
                return
        await self.app(scope, receive, send)


def panel_url(base_url: str, name: str) -> str:
    """The URL of fault `name` on a panel server listening at `base_url` (ws://host:port/path)."""
    scheme, _, rest = base_url.partition("://")
    host, _, path = rest.partition("/")
    return f"{scheme}://{host}{PANEL_PREFIX}{name}/{path}"


async def _refuse(scope: dict[str, Any], receive: Any, send: Any, code: int) -> None:
    """Accept (selecting the first asp.v* offered, ASP-VER-006) and close with `code` at once."""
    await receive()  # websocket.connect
    offered = [p for p in scope.get("subprotocols") or [] if p.startswith("asp.v")]
    await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None})
    await send({"type": "websocket.close", "code": code})


def _subject(scope: dict[str, Any]) -> str | None:
    token = dict(parse_qsl(scope.get("query_string", b"").decode())).get("token")
    for offered in scope.get("subprotocols") or []:
        if offered.startswith("asp.token."):
            token = offered[len("asp.token.") :]
    return _token_subject(token)


def _token_subject(token: str | None) -> str | None:
    """The unverified `sub` of a JWT (None when there is none)."""
    if not token:
        return None
    try:
        subject = jwt.decode(token, options={"verify_signature": False}).get("sub")
    except jwt.InvalidTokenError:
        return None
    return subject if isinstance(subject, str) else None


def _token_valid(conn: Connection) -> bool:
    from reference_server.auth import AuthError, verify

    try:
        verify(conn.query.get("token"), os.environ["ASP_JWT_SECRET"])
    except AuthError:
        return False
    return True


def apply_patch(name: str) -> None:
    """Break the reference code itself, for the fault middleware cannot express: a conversation
    store that finds every conversation the user's own (a store-level ownership bug)."""
    from reference_server import storage

    if name == "utf8_replace":
        _patch_utf8_replace()
        return
    if name == "idle_from_last_frame":
        _patch_idle_from_last_frame()
        return
    if name == "control_frames_are_activity":
        _patch_control_frames_are_activity()
        return
    if name != "any_owner":
        raise KeyError(name)

    async def bind(self: Any, conversation_id: str, user_id: str) -> bool:
        return True

    async def load(self: Any, conversation_id: str, user_id: str) -> list[Any]:
        from sqlalchemy import select

        from reference_server.storage import exchanges, row_exchange

        async with self.engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(exchanges)
                    .where(exchanges.c.conversation_id == conversation_id)
                    .order_by(exchanges.c.id)
                )
            ).all()
        return [e for row in rows if (e := row_exchange(conversation_id, row)) is not None]

    storage.SqlConversationStore.bind = bind  # type: ignore[method-assign]
    storage.SqlConversationStore.load = load  # type: ignore[method-assign]


def _patch_utf8_replace() -> None:
    """The transport decodes text frames with replacement characters instead of failing invalid
    UTF-8 with 1007: the app then answers the garbled text as if it were any other text."""
    from reference_server.transport import AspWebSocketProtocol

    def deliver(self: Any) -> None:
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return
        if self.curr_msg_data_type == "text":
            self.queue.put_nowait({"type": "websocket.receive", "text": data.decode(errors="replace")})
        else:
            self.queue.put_nowait({"type": "websocket.receive", "bytes": data})

    AspWebSocketProtocol.send_receive_event_to_app = deliver  # type: ignore[method-assign]


def _patch_idle_from_last_frame() -> None:
    """The idle timer counts from the last client data frame only, not from the end of the last run:
    after a run longer than the idle timeout the connection is closed at once."""
    from reference_server.protocol import connection

    def idle_deadline(conn: Any) -> float | None:
        if conn.session.run is not None:
            return None
        return float(conn.last_data_at + conn.idle_timeout_s)

    connection.idle_deadline = idle_deadline


def _patch_control_frames_are_activity() -> None:
    """A client's WebSocket Ping counts as activity: the transport hands the app a ping of its own
    for it, which restarts the idle timer (and is answered with a pong event)."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    answer = WebSocketsSansIOProtocol.handle_ping

    def handle_ping(self: Any) -> None:
        answer(self)
        self.queue.put_nowait({"type": "websocket.receive", "text": '{"type": "ping", "id": "control"}'})

    WebSocketsSansIOProtocol.handle_ping = handle_ping  # type: ignore[method-assign]
