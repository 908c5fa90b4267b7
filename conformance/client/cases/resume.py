"""Resume and history: a drop mid-run, a seq gap, a refused resume, a run the history already holds
(ASP-RES-005, ASP-RES-008..010, ASP-ENV-003, ASP-ERR-011; PROTOCOL.md section 15)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from conformance.client.context import ANSWER_S, TEXT, TOKENS, ScenarioContext, ScriptedRun
from conformance.client.scenarios import scenario
from conformance.client.server import Event, KitSession, Peer

GAP_WAIT_S = 3.0  # how long a client has to act on a seq gap (reconnect with backoff included)
SETTLE_S = 0.3  # what the kit sent before a drop has reached the client by then


@dataclass
class Interrupted:
    """A run the kit started, then cut off: `last_seq` is the last event the client received."""

    peer: Peer
    session: KitSession
    run: ScriptedRun
    content: str
    last_seq: int


async def _interrupted(ctx: ScenarioContext, content: str, sent: int) -> Interrupted:
    """Connect, have the user send `content`, stream the first `sent` tokens of its run."""
    peer = await ctx.first_connection()
    session = await ctx.greet(peer)
    message = await ctx.user_message(peer, content)
    run = ctx.run_for(peer, message)
    await peer.send(run.started())
    for token in TOKENS[:sent]:
        await peer.send(run.delta(token))
    await ctx.settle(SETTLE_S)
    return Interrupted(peer, session, run, content, session.last_seq)


def _finish_offline(cut: Interrupted, sent: int) -> None:
    """The rest of the run happens while the client is away: numbered in its session, not sent."""
    for token in TOKENS[sent:]:
        cut.session.number(cut.run.delta(token))
    cut.session.number(cut.run.complete())


async def _resume_of(ctx: ScenarioContext, peer: Peer) -> Event:
    """The client's first message on a reconnected connection, which must be a resume for the
    scenario to go on (resuming is not required of clients: without it, untestable)."""
    first = await peer.next_message(("resume", "message"), ctx.t(ANSWER_S))
    ctx.premise(
        first is not None and first.get("type") == "resume",
        f"the client did not resume after reconnecting (its first message: {first}); "
        "the requirements judged here bind resuming clients",
    )
    assert first is not None
    return first


async def _replay(peer: Peer, old: KitSession, last_seq: int, *, overlap: int = 0) -> None:
    """Answer a resume from `last_seq` of `old`: `resumed` (numbered in the connection's new
    session), then `old`'s events after `last_seq` with their original seq, the connection
    carrying `old` from then on. `overlap` events before them are sent again first (duplicates,
    which a correct server never sends and a correct client drops)."""
    replayed = old.after(last_seq)
    await peer.send(
        {
            "type": "resumed",
            "session_id": old.session_id,
            "replay_from": last_seq + 1,
            "replay_count": len(replayed),
        }
    )
    run_events = [e for e in old.events if e["type"] not in ("session", "history", "pong")]
    duplicates = [e for e in run_events if int(e["seq"]) <= last_seq][-overlap:] if overlap else []
    async with peer.exclusive:
        peer.session = old
        for event in [*duplicates, *replayed]:
            await peer.transmit(event)


def _last_seq(resume: Event) -> int | None:
    value = resume.get("last_seq")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@scenario(
    "resume.drop_mid_run",
    "A connection dropped mid-run: the client resumes from its last seq, drops duplicates, "
    "and shows the text of an undisturbed run",
    ["ASP-RES-005", "ASP-RES-008"],
)
async def drop_mid_run(ctx: ScenarioContext) -> None:
    cut = await _interrupted(ctx, "tell me a story", sent=3)
    _finish_offline(cut, sent=3)
    cut.peer.abort()
    again = await ctx.connection(ANSWER_S, "reconnect after the drop")
    await ctx.greet(again)  # the run is still going: nothing stored yet, no history
    resume = await _resume_of(ctx, again)
    last_seq = _last_seq(resume)
    ctx.check(
        resume.get("session_id") == cut.session.session_id and last_seq == cut.last_seq,
        "ASP-RES-008",
        f"resume names session {resume.get('session_id')!r} from last_seq {resume.get('last_seq')!r}; "
        f"the client was in {cut.session.session_id!r} and its last event had seq {cut.last_seq}",
    )
    start = min(max(last_seq or 0, 0), cut.session.last_seq)
    await _replay(again, cut.session, start, overlap=2)
    report = await ctx.reported_run(cut.run.run_id)
    shown = report.get("text") if report else None
    ctx.check(
        shown == TEXT,
        "ASP-RES-005",
        f"after the drop, the resume and a replay repeating two events it had, the run shows {shown!r}; "
        f"undisturbed it shows {TEXT!r}",
    )
    reports = ctx.runs_reported(cut.run.run_id)
    ctx.check(len(reports) <= 1, "ASP-RES-005", f"the run was reported {len(reports)} times")


@scenario(
    "resume.seq_gap",
    "A gap in seq: the client treats the connection as broken and resumes from the last seq before the gap",
    ["ASP-ENV-003"],
)
async def seq_gap(ctx: ScenarioContext) -> None:
    cut = await _interrupted(ctx, "count for me", sent=2)
    cut.session.number(cut.run.delta(TOKENS[2]))  # numbered, never sent on this connection
    gap_event = await cut.peer.send(cut.run.delta(TOKENS[3]))
    gap_at = time.monotonic()
    again = await ctx.server.next_peer(ctx.t(GAP_WAIT_S))
    if again is None:
        ctx.check(
            False,
            "ASP-ENV-003",
            f"events {cut.last_seq} then {gap_event['seq']}: the client went on with this connection "
            f"(no new one within {ctx.t(GAP_WAIT_S):.0f} s)",
        )
        for token in TOKENS[4:]:
            await cut.peer.send(cut.run.delta(token))
        await cut.peer.send(cut.run.complete())
        report = await ctx.reported_run(cut.run.run_id)
        ctx.note(f"the run, missing seq {cut.last_seq + 1}, was reported as {report}")
        return
    closed = "closed the connection and " if cut.peer.client_close is not None else ""
    ctx.check(
        True,
        "ASP-ENV-003",
        f"events {cut.last_seq} then {gap_event['seq']}: the client {closed}reconnected "
        f"{(again.arrived - gap_at) * 1000:.0f} ms later",
    )
    _finish_offline(cut, sent=4)
    await ctx.greet(again)
    resume = await _resume_of(ctx, again)
    last_seq = _last_seq(resume)
    ctx.check(
        resume.get("session_id") == cut.session.session_id and last_seq == cut.last_seq,
        "ASP-ENV-003",
        f"resume names session {resume.get('session_id')!r} from last_seq {resume.get('last_seq')!r}; "
        f"the last event before the gap had seq {cut.last_seq} in {cut.session.session_id!r}",
    )
    await _replay(again, cut.session, min(max(last_seq or 0, 0), cut.session.last_seq))
    report = await ctx.reported_run(cut.run.run_id)
    shown = report.get("text") if report else None
    ctx.check(
        shown == TEXT,
        "ASP-ENV-003",
        f"after the resume the run shows {shown!r}; undisturbed it shows {TEXT!r}",
    )


@scenario(
    "resume.failed_falls_back_to_history",
    "resume_failed: the client goes on in its new session, resuming no more, sending no earlier turn again",
    ["ASP-RES-010", "ASP-ERR-011"],
)
async def failed_falls_back_to_history(ctx: ScenarioContext) -> None:
    peer = await ctx.first_connection()
    await ctx.greet(peer)
    first = await ctx.user_message(peer, "first question")
    answered = ctx.run_for(peer, first)
    await ctx.play(peer, answered)
    ctx.premise(
        await ctx.reported_run(answered.run_id), "the client reported no run for an undisturbed exchange"
    )
    second = await ctx.user_message(peer, "second question")
    lost = ctx.run_for(peer, second)
    await peer.send(lost.started())
    for token in TOKENS[:2]:
        await peer.send(lost.delta(token))
    await ctx.settle(SETTLE_S)
    peer.abort()  # the server went away with the run: it is stored as far as it went
    again = await ctx.connection(ANSWER_S, "reconnect after the drop")
    history = answered.stored("first question", TEXT) + lost.stored("second question", "".join(TOKENS[:2]))
    await ctx.greet(again, history=history)
    await _resume_of(ctx, again)
    await again.send(
        {"type": "error", "code": "resume_failed", "message": "The session is gone.", "retryable": False}
    )
    await ctx.settle(1.0)
    resumes = again.sent_of("resume")
    ctx.check(
        len(resumes) == 1,
        "ASP-ERR-011",
        f"after resume_failed (retryable false) the client sent {len(resumes) - 1} more resume(s)",
    )
    again_sent = [m.get("content") for m in again.sent_of("message")]
    ctx.check(
        not again_sent,
        "ASP-RES-010",
        f"after resume_failed, with both turns in the history it was sent, the client sent {again_sent} again"
        if again_sent
        else "after resume_failed the client sent no earlier turn again",
    )
    # The client has sent what its user typed twice already: not doing so now is its failure.
    third = await ctx.user_message(again, "third question", "ASP-RES-010")
    run = ctx.run_for(again, third)
    await ctx.play(again, run)
    report = await ctx.reported_run(run.run_id)
    shown = report.get("text") if report else None
    ctx.check(
        shown == TEXT,
        "ASP-RES-010",
        f"in the new session (seq from 1 again) the next run shows {shown!r}; undisturbed it shows {TEXT!r}",
    )
    ctx.check(
        len(ctx.runs_reported(answered.run_id)) == 1,
        "ASP-RES-010",
        f"the first exchange was reported {len(ctx.runs_reported(answered.run_id))} times",
    )


@scenario(
    "resume.run_complete_in_history",
    "A run that finished while the client was away is shown once: from the history, "
    "not again from the resume's replay",
    ["ASP-RES-009"],
    since="1.1",
)
async def run_complete_in_history(ctx: ScenarioContext) -> None:
    cut = await _interrupted(ctx, "a long answer", sent=2)
    _finish_offline(cut, sent=2)
    cut.peer.abort()
    again = await ctx.connection(ANSWER_S, "reconnect after the drop")
    await ctx.greet(again, history=cut.run.stored(cut.content, TEXT))
    resume = await _resume_of(ctx, again)
    await _replay(again, cut.session, min(max(_last_seq(resume) or 0, 0), cut.session.last_seq))
    following = await ctx.user_message(again, "and one more")
    run = ctx.run_for(again, following)
    await ctx.play(again, run)
    report = await ctx.reported_run(run.run_id)
    ctx.premise(report, "the client reported no run for the message after the resume")
    shown = ctx.runs_reported(cut.run.run_id)
    ctx.check(
        not shown,
        "ASP-RES-009",
        f"run {cut.run.run_id} is complete in the history sent at the reconnect (entries carry its run_id, "
        f"ASP-HIS-009), and the client showed it again from the resume's replay: {shown}"
        if shown
        else "the client dropped the replay of a run the history it was sent holds complete "
        "(PROTOCOL.md section 15): the answer is shown once",
    )
    assert report is not None
    ctx.check(
        report.get("text") == TEXT,
        "ASP-RES-009",
        f"the next run, after the dropped replay, shows {report.get('text')!r}; undisturbed {TEXT!r}",
    )
