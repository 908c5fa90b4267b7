"""Resume: replay with original seq, live events after; refusals by resume_failed.

The replay scenario is sized from the announced `replay_window`: the kit drops its connection
early in a paced run and resumes before more events than the window holds can have passed.
When the server answers `resume_failed` and more events than the window may have passed (the
reconnect took longer than planned), the answer is allowed: the case is retried with a slower
run, never failed.
"""

from __future__ import annotations

import math
import time

from conformance.context import ANSWER_S, CaseContext, text_of
from conformance.credentials import Unavailable
from conformance.registry import case
from conformance.wire import AspClient, Event
from spec.fixtures import fixture_text

# Events besides the paced tokens that may follow last_seq: a pong in flight, the complete.
EXTRA_EVENTS = 2


def _expired(ctx: CaseContext, ended: float, answered: float) -> str:
    """Why a `resume_failed` is allowed because the session may have outlived its announced
    `session_ttl_ms` (ASP-RES-003 keeps it resumable only that long after its connection ends), or
    "" when it may not. `ended` (monotonic seconds) is when the kit closed or dropped the session's
    connection: the server saw it end no earlier. `answered` is when the answer to the resume
    arrived: the resume reached the server no later."""
    ttl = ctx.terms.session_ttl_s
    if ttl is None or answered - ended <= ttl:
        return ""
    return (
        f"the resume reached the server up to {answered - ended:.2f}s after the session's connection "
        f"ended, longer than the announced session_ttl_ms ({ttl * 1000:g}), so resume_failed is allowed"
    )


@case(
    "resume.replays_then_continues",
    "resume replays missed events with their seq, then the live run",
    ["ASP-RES-001", "ASP-RES-003", "ASP-RES-004", "ASP-ENV-002"],
    fixtures=True,
)
async def replays_then_continues(ctx: CaseContext) -> None:
    window = ctx.terms.replay_window
    if window is None or window < 1:
        raise Unavailable(f"the announced replay_window ({window}) leaves no room to resume a run")
    # With a window of EXTRA_EVENTS or less the run is paced at one token per planned reconnect:
    # a resume that comes in time is judged, a refusal when more may have passed is allowed.
    reconnect = ctx.scaled(1.0) * ctx.stretch  # planned time from the drop to the resume
    pace_ms = max(25, math.ceil(reconnect * 1000 / max(1, window - EXTRA_EVENTS)))
    after = math.ceil(reconnect * 1000 / pace_ms) + 4  # the run goes on past the resume
    tokens = 2 + after
    ctx.real_time(tokens * pace_ms / 1000, "the paced run the resume joins")
    first, session = await ctx.connect(conversation_id="new", keepalive=False)  # no pong after last_seq
    message_id = await ctx.send_message(first, f"asp-fixture:slow {tokens} {pace_ms}")
    await ctx.started(first, message_id)
    for _ in range(2):
        await ctx.expect(first, "text_delta", "ASP-RUN-009", timeout=ANSWER_S + pace_ms / 1000)
    last = first.events[-1]
    last_seq = last["seq"]
    dropped_after = first.arrival(last) or time.monotonic()
    seen = text_of(first.events)
    dropped = time.monotonic()
    first.abort()
    second, _ = await ctx.connect(conversation_id=session["conversation_id"])
    sent = time.monotonic()
    await second.send({"type": "resume", "session_id": session["session_id"], "last_seq": last_seq})
    answer = await ctx.expect(
        second,
        lambda e: e.get("type") == "resumed" or (e.get("type") == "error" and "run_id" not in e),
        "ASP-RES-001",
        what="resumed (or the resume_failed the replay window allows)",
    )
    if answer.get("type") == "error":
        expired = _expired(ctx, dropped, second.arrival(answer) or time.monotonic())
        ctx.precondition(not expired, expired)
        passed = math.floor((sent - dropped_after) * 1000 / pace_ms) + EXTRA_EVENTS
        ctx.precondition(
            passed <= window,
            f"up to {passed} events may have passed since last_seq, more than the replay window of "
            f"{window}, so resume_failed is allowed",
        )
        ctx.fail(
            "ASP-RES-001",
            f"resume refused ({answer.get('code')!r}) though at most {passed} events had passed since "
            f"last_seq, within the announced replay window of {window}",
        )
    ctx.check(
        answer.get("replay_from") == last_seq + 1,
        "ASP-RES-001",
        f"replay_from {answer.get('replay_from')}, expected {last_seq + 1}",
    )
    complete = await ctx.expect(second, "complete", "ASP-RES-004", timeout=ANSWER_S + tokens * pace_ms / 1000)
    await ctx.settle(second)
    received = second.oracle.events  # every event, the kit's own keepalive pongs included
    following = received[received.index(answer) + 1 :] if answer in received else []
    ctx.check(
        bool(following) and following[0].get("seq") == last_seq + 1,
        "ASP-RES-001",
        f"the first event after resumed has seq {following[0].get('seq') if following else None}, "
        f"expected {last_seq + 1}",
    )
    after_events = [
        e
        for e in second.events
        if isinstance(e.get("seq"), int) and e["seq"] > last_seq and e.get("run_id") == complete.get("run_id")
    ]
    ctx.check(
        seen + text_of(after_events) == fixture_text(tokens),
        "ASP-RES-004",
        "the text before the drop and after the resume make the whole answer",
    )


@case(
    "resume.refused_for_unknown_sessions",
    "an unknown session cannot be resumed; the connection goes on",
    ["ASP-RES-002"],
)
async def unknown_session(ctx: CaseContext) -> None:
    client, _ = await ctx.connect()
    await client.send(
        {"type": "resume", "id": "kit-r1", "session_id": "ses_no_such_session_at_all", "last_seq": 3}
    )
    error = await ctx.expect(client, "error", "ASP-RES-002")
    ctx.check(error.get("code") == "resume_failed", "ASP-RES-002", f"code {error.get('code')!r}")
    await ctx.alive(client, "ASP-RES-002")


@case(
    "resume.refused_for_other_users",
    "another user's session cannot be resumed",
    ["ASP-RES-002", "ASP-HIS-005", "ASP-SEC-003"],
    connections=2,
)
async def other_users_session(ctx: CaseContext) -> None:
    _, session = await ctx.connect(0)
    intruder, _ = await ctx.connect(1)
    await intruder.send({"type": "resume", "session_id": session["session_id"], "last_seq": 0})
    answer = await ctx.expect(
        intruder,
        lambda e: e.get("type") in ("error", "resumed"),
        "ASP-RES-002",
        what="an answer to the foreign resume",
    )
    ctx.check(
        answer.get("code") == "resume_failed",
        "ASP-HIS-005",
        f"resuming another user's session got {answer.get('type')} {answer.get('code', '')}",
    )


@case(
    "resume.refused_after_a_message",
    "resume after a message is refused",
    ["ASP-RES-002"],
    fixtures=True,
)
async def after_message(ctx: CaseContext) -> None:
    other, other_session = await ctx.connect(0, conversation_id="new")
    await other.close()
    client, _ = await ctx.connect(0, conversation_id="new")
    await ctx.run(client, "asp-fixture:text 1")
    await client.send({"type": "resume", "session_id": other_session["session_id"], "last_seq": 1})
    error = await ctx.expect(client, "error", "ASP-RES-002")
    ctx.check(error.get("code") == "resume_failed", "ASP-RES-002", f"code {error.get('code')!r}")


async def _resume_answer(
    ctx: CaseContext, client: AspClient, session_id: str, last_seq: int, label: str
) -> Event:
    sent = {"type": "resume", "id": ctx.new_id("kit-r"), "session_id": session_id, "last_seq": last_seq}
    await client.send(sent)
    answer = await ctx.expect(
        client,
        lambda e: e.get("type") == "resumed" or e.get("code") == "resume_failed",
        "ASP-RES-006",
        what=f"an answer to {label}",
    )
    if answer.get("type") == "error":
        ctx.judge_answer(answer, sent)
    return answer


@case(
    "resume.what_a_resume_may_name",
    "a resume of the current session, past the last seq, or after a resume is refused; pings, bad "
    "frames and refused messages before a resume do not prevent it",
    ["ASP-RES-006", "ASP-ERR-012"],
)
async def what_a_resume_may_name(ctx: CaseContext) -> None:
    old, old_session = await ctx.connect(0, conversation_id="new", keepalive=False)
    await old.close()  # its session outlives the connection; its last event is the session (seq 1)
    old_id, old_seq = str(old_session["session_id"]), int(old_session.get("seq", 1))
    client, session = await ctx.connect(0, conversation_id="new")
    refusals = (
        (str(session["session_id"]), 1, "a resume naming the connection's own session"),
        (old_id, old_seq + 1000, "a resume whose last_seq is beyond the named session's last seq"),
    )
    for session_id, last_seq, label in refusals:
        answer = await _resume_answer(ctx, client, session_id, last_seq, label)
        ctx.check(answer.get("type") == "error", "ASP-RES-006", f"{label} got {answer.get('type')}")
    await client.close()
    # A session ended just now, so that the resume comes as soon after its end as the scenario allows:
    # a server keeps it resumable only for its announced session_ttl_ms, which may be 0 (ASP-RES-003).
    old, old_session = await ctx.connect(0, conversation_id="new", keepalive=False)
    old_id, old_seq = str(old_session["session_id"]), int(old_session.get("seq", 1))
    ended = time.monotonic()
    await old.close()
    client, _ = await ctx.connect(0, conversation_id="new")
    await ctx.alive(client, "ASP-MSG-003", "before-resume")
    await client.send("this is not json")
    await client.send({"type": "message", "id": "kit-refused", "content": ""})
    for _ in range(2):
        await ctx.expect(client, "error", "ASP-ERR-002", what="the errors answering the bad frames")
    answer = await _resume_answer(ctx, client, old_id, old_seq, "a resume after a ping and two bad frames")
    if answer.get("type") != "resumed":
        expired = _expired(ctx, ended, client.arrival(answer) or time.monotonic())
        ctx.precondition(not expired, expired)
    ctx.check(
        answer.get("type") == "resumed",
        "ASP-RES-006",
        f"a resume after a ping, invalid JSON and a refused message got {answer.get('type')} "
        f"{answer.get('code', '')}: only a run started in the session prevents a resume",
    )
    if answer.get("type") != "resumed":
        return
    answer = await _resume_answer(ctx, client, old_id, old_seq, "a second resume on the same connection")
    ctx.check(
        answer.get("type") == "error",
        "ASP-RES-006",
        f"a second resume on a connection that already resumed got {answer.get('type')}",
    )
