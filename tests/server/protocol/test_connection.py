"""The decision core as tables, no sockets: (state, input, time) -> effects, and the state after.

Rows named `defect N` are the issue's defects that the core decides; the socket tests in
tests/server prove the same behaviours end to end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from reference_server.protocol import connection as core
from reference_server.protocol.connection import CloseReason, Phase, ResumeTarget, RunOutcome, RunSlot
from reference_server.protocol.effects import (
    AdmitRun,
    BindResumed,
    CancelRun,
    Close,
    FindSession,
    ResumeRequest,
    RunRequest,
    Send,
    StartRun,
    SwitchSession,
)
from reference_server.protocol.ratelimit import ALLOWED, RateDecision
from spec.registry import close_code

IDLE_S = 10.0
MAX_BYTES = 65_536


def connection(*, run: RunSlot | None = None, runs_started: int = 0, **changes: Any) -> core.ConnectionState:
    session = core.SessionState(
        session_id="ses_own", conversation_id="conv_1", run=run, runs_started=runs_started
    )
    state = core.ConnectionState(
        user_id="alice",
        session=session,
        idle_timeout_s=IDLE_S,
        max_message_bytes=MAX_BYTES,
        last_data_at=0.0,
        new_run_id=lambda: "run_new",
        new_message_id=lambda: "msg_minted",
    )
    for key, value in changes.items():
        setattr(state, key, value)
    return state


ACTIVE = RunSlot(run_id="run_a", message_id="m_a")


def frame(**message: Any) -> str:
    return json.dumps(message, ensure_ascii=False)


def sent(effects: list[Any]) -> list[dict[str, Any]]:
    return [e.event for e in effects if isinstance(e, Send)]


def error_of(effects: list[Any]) -> dict[str, Any]:
    (event,) = sent(effects)
    assert event["type"] == "error"
    return event


@dataclass
class Row:
    name: str
    text: str
    code: str  # the error code, or "" when no error is expected
    message_id: str | None = None  # the error's message_id (absent when None)
    state: dict[str, Any] = field(default_factory=dict)


ERROR_ROWS = [
    Row("not JSON", "{nope", "invalid_json"),
    Row("a JSON array", "[1]", "invalid_json"),
    Row("unknown type keeps a valid id", frame(type="subscribe", id="u1"), "unknown_type", "u1"),
    Row("no type", frame(content="x"), "unknown_type"),
    Row("schema broken, valid id kept", frame(type="message", id="v1", content=""), "invalid_message", "v1"),
    Row(
        "schema broken, invalid id dropped",
        frame(type="message", id="bad id!", content="x"),
        "invalid_message",
    ),
    Row(
        "defect 1: content nested 1000 deep",
        '{"type":"message","id":"deep","content":' + "[" * 1000 + "]" * 1000 + "}",
        "invalid_message",
        "deep",
    ),
    Row(
        "defect 1: content nested 5000 deep (beyond orjson's 1024)",
        '{"type":"message","id":"deeper","content":' + '{"a":' * 5000 + "1" + "}" * 5000 + "}",
        "invalid_message",
        "deeper",
    ),
    Row("a deep vendor member is fine: it is still a ping", "", ""),  # replaced below
    Row(
        "ERR-012: run_in_progress carries the client's id, no run_id",
        frame(type="message", id="m2", content="hi"),
        "run_in_progress",
        "m2",
        {"run": ACTIVE},
    ),
    Row(
        "ERR-012: never a minted id",
        frame(type="message", content="hi"),
        "run_in_progress",
        None,
        {"run": ACTIVE},
    ),
    Row(
        "LIM-009 order: conversation before run_in_progress",
        frame(type="message", id="m3", content="hi", conversation_id="conv_other"),
        "conversation_not_found",
        "m3",
        {"run": ACTIVE},
    ),
    Row("cancel without a run", frame(type="cancel", id="c1"), "no_active_run", "c1"),
    Row(
        "cancel naming another run",
        frame(type="cancel", id="c2", run_id="run_other"),
        "no_active_run",
        "c2",
        {"run": ACTIVE},
    ),
    Row(
        "RES-006: resume after a run started here",
        frame(type="resume", id="r1", session_id="ses_old", last_seq=3),
        "resume_failed",
        "r1",
        {"runs_started": 1},
    ),
    Row(
        "RES-006: resume of this connection's own session",
        frame(type="resume", id="r2", session_id="ses_own", last_seq=1),
        "resume_failed",
        "r2",
    ),
    Row(
        "RES-006: a second resume after a successful one",
        frame(type="resume", id="r3", session_id="ses_old", last_seq=1),
        "resume_failed",
        "r3",
        {"resumed": True},
    ),
    Row(
        "CLS-005: a message during shutdown",
        frame(type="message", id="m4", content="hi"),
        "shutting_down",
        "m4",
        {"phase": Phase.DRAINING, "run": ACTIVE},
    ),
]
ERROR_ROWS[8] = Row(
    "a vendor member nested 3000 deep does not make a ping invalid",
    '{"type":"ping","id":"p","x-deep":' + "[" * 3000 + "]" * 3000 + "}",
    "",
)


@pytest.mark.parametrize("row", ERROR_ROWS, ids=lambda r: r.name)
def test_each_frame_gets_the_error_the_spec_prescribes_and_the_connection_stays(row: Row):
    state = connection(**row.state)
    effects = core.on_frame(state, row.text, None, now=5.0)
    assert not any(isinstance(e, Close) for e in effects)
    assert state.last_data_at == 5.0  # every data frame restarts the idle timer (ASP-HB-005)
    if not row.code:
        assert sent(effects)[0]["type"] == "pong"
        return
    error = error_of(effects)
    assert error["code"] == row.code
    assert "run_id" not in error  # ASP-ERR-012
    assert error.get("message_id") == row.message_id


def test_a_binary_frame_is_unsupported_frame():
    assert error_of(core.on_frame(connection(), None, b"\x00\x01", 1.0))["code"] == "unsupported_frame"


@pytest.mark.parametrize("size,closes", [(MAX_BYTES, False), (MAX_BYTES + 1, True)])
def test_a_message_of_max_bytes_is_served_and_one_byte_more_closes_1009(size: int, closes: bool):
    empty = frame(type="ping", id="p", **{"x-pad": ""})
    text = frame(type="ping", id="p", **{"x-pad": "é" * ((size - len(empty.encode())) // 2)})
    text = text if len(text.encode()) == size else text.replace('"p"', '"pp"', 1)
    assert len(text.encode()) == size  # counted in UTF-8 bytes (ASP-LIM-010)
    effects = core.on_frame(connection(), text, None, 1.0)
    assert (effects == [Close(close_code("message_too_big"), "message too big")]) is closes


def test_a_valid_message_asks_the_rate_limiter_then_starts_the_run_with_run_started_first():
    state = connection()
    effects = core.on_frame(state, frame(type="message", id="m1", content="hello"), None, 1.0)
    assert effects == [AdmitRun(RunRequest("m1", "hello"))]
    assert state.session.run is None  # nothing started before the answer
    started = core.on_admission(state, RunRequest("m1", "hello"), ALLOWED, 1.0)
    assert sent(started) == [
        {"type": "run_started", "run_id": "run_new", "message_id": "m1", "conversation_id": "conv_1"}
    ]
    assert started[1] == StartRun("run_new", "m1", "hello")
    assert state.session.run == RunSlot("run_new", "m1") and state.session.runs_started == 1


def test_a_message_without_id_gets_a_minted_message_id_in_run_started_only():
    state = connection()
    started = core.on_admission(state, RunRequest(None, "hello"), ALLOWED, 1.0)
    assert sent(started)[0]["message_id"] == "msg_minted"


def test_defect_4_a_rate_refusal_says_when_to_retry_and_counts_nothing():
    state = connection()
    refused = core.on_admission(state, RunRequest("m9", "x"), RateDecision(False, 368), 1.0)
    error = error_of(refused)
    assert (error["code"], error["message_id"], error["retry_after_ms"]) == ("rate_limited", "m9", 368)
    assert "run_id" not in error and state.session.runs_started == 0


def test_cancel_of_the_active_run():
    state = connection(run=RunSlot("run_a", "m_a"))
    assert core.on_frame(state, frame(type="cancel", run_id="run_a"), None, 1.0) == [CancelRun("run_a")]
    assert core.on_frame(state, frame(type="cancel"), None, 1.0) == [CancelRun("run_a")]


@pytest.mark.parametrize(
    "before",
    [
        frame(type="ping"),
        "not json",
        frame(type="message", id="refused", content="x", conversation_id="conv_other"),
    ],
    ids=["a ping", "a bad frame", "a refused message"],
)
def test_resume_is_allowed_after_pings_bad_frames_and_refused_messages(before: str):
    state = connection()
    core.on_frame(state, before, None, 1.0)
    effects = core.on_frame(state, frame(type="resume", id="r", session_id="ses_old", last_seq=2), None, 1.0)
    assert effects == [FindSession(ResumeRequest("ses_old", 2, "r"))]


REQUEST = ResumeRequest("ses_old", 5, "r")


@pytest.mark.parametrize(
    "target,why",
    [
        (None, "no such session"),
        (ResumeTarget("mallory", 9, 1), "no such session"),  # another user's: indistinguishable (HIS-005)
        (ResumeTarget("alice", 9, 1, resumable=False), "no such session"),
        (ResumeTarget("alice", 4, 1), "beyond"),  # RES-006: last_seq beyond the session's last event
        (ResumeTarget("alice", 9, 7), "no longer kept"),  # RES-003
        (ResumeTarget("alice", 9, None), "no longer kept"),
    ],
)
def test_resume_refusals_after_the_lookup(target: ResumeTarget | None, why: str):
    state = connection()
    error = error_of(core.on_resume_target(state, REQUEST, target))
    assert (error["code"], error["message_id"]) == ("resume_failed", "r") and why in error["message"]
    assert not state.resumed


@pytest.mark.parametrize("target", [ResumeTarget("alice", 9, 6), ResumeTarget("alice", 5, None)])
def test_a_resume_replays_from_last_seq_and_switches_sessions(target: ResumeTarget):
    state = connection()
    effects = core.on_resume_target(state, REQUEST, target)
    replay = target.last_seq - 5
    assert sent(effects) == [
        {"type": "resumed", "session_id": "ses_old", "replay_from": 6, "replay_count": replay}
    ]
    # bound before the client hears it carries the conversation (ASP-SES-009)
    assert effects[0] == BindResumed("ses_old")
    assert effects[2] == SwitchSession("ses_old", 5) and state.resumed


@pytest.mark.parametrize(
    "outcome,events",
    [
        (RunOutcome("stop"), [("complete", "stop")]),
        (RunOutcome("cancelled"), [("complete", "cancelled")]),
        (RunOutcome("error", "model_error"), [("error", "model_error"), ("complete", "error")]),
        (RunOutcome("error", "shutting_down"), [("error", "shutting_down"), ("complete", "error")]),
    ],
)
def test_a_run_ends_with_its_error_carrying_run_and_message_ids_then_complete(outcome, events):
    session = core.SessionState("ses", "conv", run=RunSlot("run_a", "m_a"))
    effects = core.on_run_end(session, "run_a", outcome, now=7.0)
    shown = sent(effects)
    assert [(e["type"], e.get("code") or e.get("finish_reason")) for e in shown] == events
    for event in shown:
        assert event["run_id"] == "run_a"
        if event["type"] == "error":
            assert event["message_id"] == "m_a"  # ASP-ERR-013
    assert session.run is None and session.last_run_end == 7.0


def test_idle_counts_from_the_later_of_the_last_data_frame_and_the_run_end():
    state = connection(last_data_at=1.0)
    assert core.next_deadline(state) == 1.0 + IDLE_S
    state.session.run = RunSlot("run_a", "m")
    assert core.next_deadline(state) is None  # never while a run is active
    core.on_run_end(state.session, "run_a", RunOutcome("stop"), now=30.0)
    assert core.next_deadline(state) == 30.0 + IDLE_S  # ASP-HB-006: a full idle period after the run
    assert core.on_timer(state, 30.0 + IDLE_S - 0.001) == []
    assert core.on_timer(state, 30.0 + IDLE_S) == [Close(close_code("idle_timeout"), "idle timeout")]
    assert state.phase is Phase.CLOSED and core.on_frame(state, frame(type="ping"), None, 50.0) == []


def test_drain_waits_for_the_run_refuses_new_ones_then_closes_1012():
    state = connection(run=RunSlot("run_a", "m_a"))
    assert core.on_drain(state, 1.0) == []
    assert core.next_deadline(state) is None
    assert (
        error_of(core.on_frame(state, frame(type="message", content="x"), None, 1.5))["code"]
        == "shutting_down"
    )
    assert core.on_frame(state, frame(type="cancel"), None, 1.6) == [CancelRun("run_a")]
    core.on_run_end(state.session, "run_a", RunOutcome("error", "shutting_down"), now=2.0)
    assert core.next_deadline(state) == 0.0
    assert core.on_timer(state, 2.0) == [Close(close_code("service_restart"), "server shutting down")]


def test_drain_without_a_run_closes_at_once():
    assert core.on_drain(connection(), 1.0) == [Close(close_code("service_restart"), "server shutting down")]


def test_superseded_closes_4002_once():
    state = connection()
    assert core.on_superseded(state) == [Close(close_code("superseded"), "superseded by a newer connection")]
    assert core.on_superseded(state) == []


def test_every_close_reason_names_a_server_close_code_of_the_registry():
    from spec.registry import close_codes

    for reason in CloseReason:
        entry = close_codes()[reason.code]
        assert entry.name == reason.value and entry.sent_by in ("server", "both"), reason
