"""Runs: message to complete, one at a time, streamed text, model errors, cancellation.

A probe the kit sends into a run (a ping, a second message, a cancel) is evidence only when it
reached the server while the run was active: when the run's complete reached the kit first, the
premise did not hold and the case is retried with a longer run (then untestable), never failed.
"""

from __future__ import annotations

import time

from conformance.context import CaseContext, assistant_text, text_of, turns
from conformance.gating import applies
from conformance.registry import case
from spec.fixtures import fixture_text


@case(
    "runs.message_starts_a_run",
    "a message starts a run that ends with one complete",
    ["ASP-MSG-001", "ASP-MSG-002", "ASP-RUN-001", "ASP-RUN-003", "ASP-RUN-004", "ASP-RUN-007"],
)
async def message_starts_run(ctx: CaseContext) -> None:
    client, _ = await ctx.connect(conversation_id="new")
    events = await ctx.run(client, "Hello! Please answer briefly.", message_id="kit-m1")
    ctx.check(
        events[0].get("message_id") == "kit-m1",
        "ASP-MSG-002",
        f"run_started.message_id {events[0].get('message_id')!r}, sent 'kit-m1'",
    )
    ctx.check(
        events[-1].get("finish_reason") in ("stop", "length"),
        "ASP-RUN-007",
        f"finish_reason {events[-1].get('finish_reason')!r} for a plain answer",
    )


@case("runs.unique_run_ids", "two runs of a session have different run ids", ["ASP-RUN-010"])
async def unique_run_ids(ctx: CaseContext) -> None:
    client, _ = await ctx.connect(conversation_id="new")
    first = await ctx.run(client, "First question.")
    second = await ctx.run(client, "Second question.")
    ctx.check(first[0]["run_id"] != second[0]["run_id"], "ASP-RUN-010", "run ids differ")


@case("runs.ping_pong", "ping is answered by pong with the same id", ["ASP-MSG-003"])
async def ping_pong(ctx: CaseContext) -> None:
    client, _ = await ctx.connect()
    for ping_id in ("p-1", "p-2"):
        await ctx.alive(client, "ASP-MSG-003", ping_id)
    await client.send({"type": "ping"})
    pong = await ctx.expect(
        client,
        lambda e: e.get("type") == "pong" and "id" not in e,
        "ASP-MSG-003",
        what="a pong without id for a ping without id",
    )
    ctx.check("id" not in pong, "ASP-MSG-003", "a ping without id gets a pong without id")


@case("runs.ping_during_run", "ping is answered while a run streams", ["ASP-MSG-003"], fixtures=True)
async def ping_during_run(ctx: CaseContext) -> None:
    client, _ = await ctx.connect(conversation_id="new")
    await ctx.settle(client)  # measures the round trip
    pace = int(30 * ctx.stretch)
    message_id = await ctx.send_message(client, f"asp-fixture:slow 20 {pace}")
    started = await ctx.started(client, message_id)
    sent = time.monotonic()
    await client.send({"type": "ping", "id": "kit-mid-run"})
    pong = await ctx.expect(
        client,
        lambda e: e.get("type") == "pong" and e.get("id") == "kit-mid-run",
        "ASP-MSG-003",
        what="pong 'kit-mid-run'",
        timeout=10 + 20 * pace / 1000,
    )
    complete = await ctx.completion(client, started["run_id"], "ASP-RUN-004", lasts=20 * pace / 1000)
    await ctx.settle(client)
    if pong["seq"] > complete["seq"]:
        ctx.precondition(
            not ctx.completed_before(client, started["run_id"], sent),
            "the run completed before the ping could reach the server",
        )
    ctx.check(pong["seq"] < complete["seq"], "ASP-MSG-003", "the pong came during the run, not after it")


@case(
    "runs.one_at_a_time",
    "a message during a run gets run_in_progress and is neither run nor stored",
    ["ASP-RUN-002", "ASP-ERR-012"],
)
async def one_at_a_time(ctx: CaseContext) -> None:
    client, session = await ctx.connect(conversation_id="new")
    await ctx.settle(client)
    # The second message must reach the server while the first run is active, so the kit's pace
    # under the rate limit must not hold it back: both are paced here, before the first. A 1.1
    # server answers run_in_progress before it looks at the rate (ASP-LIM-009), so the first needs
    # room; a 1.0 server (whose order was open) needs room for both.
    identity = ctx.credentials.identity(ctx.index, 0)
    both = 1 if applies("ASP-LIM-009", ctx.terms.protocol_version) else 2
    await ctx.pacer.acquire(identity, ctx.allow, room=both)  # counts the first message
    client.before_send = None
    pace = int(50 * ctx.stretch)
    first = await ctx.send_message(client, f"asp-fixture:slow 10 {pace}", message_id="kit-first")
    started = await ctx.started(client, first)
    ctx.pacer.record(identity)  # a server may count the second as well
    sent = time.monotonic()
    await ctx.send_message(client, "sent too early", message_id="kit-second")
    answer = await ctx.expect(
        client,
        lambda e: e.get("message_id") == "kit-second" and e.get("type") in ("error", "run_started"),
        "ASP-RUN-002",
        what="an answer to the message sent during the run",
        timeout=10 + 10 * pace / 1000,
    )
    if answer.get("type") == "run_started" or answer.get("code") != "run_in_progress":
        ctx.precondition(
            not ctx.completed_before(client, started["run_id"], sent),
            "the first run completed before the second message could reach the server",
        )
    ctx.check(
        answer.get("type") == "error" and answer.get("code") == "run_in_progress",
        "ASP-RUN-002",
        f"a message during the run got {answer.get('type')} {answer.get('code', '')}",
    )
    ctx.check(
        answer.get("type") != "error" or answer.get("message_id") == "kit-second",
        "ASP-ERR-006",
        f"message_id {answer.get('message_id')!r}",
    )
    if answer.get("type") == "error":
        ctx.judge_answer(answer, {"id": "kit-second"})
    await ctx.completion(client, started["run_id"], "ASP-RUN-004", lasts=10 * pace / 1000)
    await ctx.settle(client)
    starts = [e for e in client.events if e.get("type") == "run_started"]
    ctx.check(len(starts) == 1, "ASP-RUN-002", f"{len(starts)} runs started")
    if ctx.declares("history"):
        await client.close()
        history = await ctx.reopen_history(session["conversation_id"], "ASP-SES-005")
        ctx.check("sent too early" not in str(history), "ASP-RUN-002", "the refused message was stored")


@case(
    "runs.deltas_rebuild_the_text",
    "deltas carry only new text; their concatenation is the stored answer",
    ["ASP-RUN-006", "ASP-CAP-004", "ASP-HIS-001"],
)
async def deltas_rebuild_text(ctx: CaseContext) -> None:
    client, session = await ctx.connect(conversation_id="new")
    events = await ctx.run(client, "asp-fixture:text 50")
    expected = fixture_text(50)
    ctx.check(text_of(events) == expected, "ASP-RUN-006", "the deltas rebuild exactly the fixture's text")
    if ctx.declares("history"):
        await client.close()
        history = await ctx.reopen_history(session["conversation_id"], "ASP-HIS-001")
        answers = assistant_text(history)
        ctx.check(answers == expected, "ASP-RUN-006", "the stored answer equals the streamed text")


@case(
    "runs.streams_incrementally",
    "text arrives as it is produced, not at the end",
    ["ASP-RUN-009"],
)
async def streams_incrementally(ctx: CaseContext) -> None:
    client, _ = await ctx.connect(conversation_id="new")
    events = await ctx.run(client, "asp-fixture:slow 10 100", lasts=1.0)
    began = client.arrival(events[0]) or 0.0
    deltas = [e for e in events if e.get("type") == "text_delta"]
    first = (client.arrival(deltas[0]) or 0.0) - began if deltas else float("inf")
    total = (client.arrival(events[-1]) or 0.0) - began
    ctx.check(first < total / 2, "ASP-RUN-009", f"first delta after {first:.2f}s of a {total:.2f}s run")


@case(
    "runs.model_error",
    "a failing model gives an error of the run, then complete error, no internals; the exchange is stored",
    ["ASP-RUN-008", "ASP-RUN-007", "ASP-ERR-007", "ASP-ERR-008", "ASP-ERR-001", "ASP-HIS-001", "ASP-ERR-013"],
)
async def model_error(ctx: CaseContext) -> None:
    client, session = await ctx.connect(conversation_id="new")
    events = await ctx.run(client, "asp-fixture:model_error")
    errors = [e for e in events if e.get("type") == "error"]
    ctx.check(len(errors) == 1, "ASP-RUN-008", f"{len(errors)} error events in the failed run")
    started = events[0]
    for error in errors:
        ctx.check(
            error.get("run_id") == started.get("run_id")
            and error.get("message_id") == started.get("message_id"),
            "ASP-ERR-013",
            f"the run's error carries run_id {error.get('run_id')!r} and message_id "
            f"{error.get('message_id')!r}; its run_started carried {started.get('run_id')!r} and "
            f"{started.get('message_id')!r}",
        )
    ctx.check(
        events[-1].get("finish_reason") == "error",
        "ASP-RUN-007",
        f"finish_reason {events[-1].get('finish_reason')!r}",
    )
    if errors:
        message = errors[0].get("message", "")
        ctx.check(errors[0].get("code") == "model_error", "ASP-RUN-008", f"code {errors[0].get('code')!r}")
        leaks = [w for w in ("Traceback", 'File "', "Exception", "Error:", ".py") if w in message]
        ctx.check(not leaks, "ASP-ERR-008", f"the error message reveals internals: {message[:120]!r}")
    if ctx.declares("history"):
        await client.close()
        history = await ctx.reopen_history(session["conversation_id"], "ASP-HIS-001")
        ctx.check(
            turns(history, "user") == ["asp-fixture:model_error"],
            "ASP-HIS-001",
            f"a run that ended in error is stored: user turns {turns(history, 'user')}",
        )
        ctx.check(
            assistant_text(history) == text_of(events),
            "ASP-HIS-001",
            f"the failed run's text {text_of(events)!r} is stored, found {assistant_text(history)!r}",
        )


@case(
    "runs.cancel",
    "cancel ends the run as cancelled, promptly, and keeps the text",
    ["ASP-CAN-001", "ASP-CAN-004", "ASP-CAN-003", "ASP-CAP-001"],
)
async def cancel(ctx: CaseContext) -> None:
    client, session = await ctx.connect(conversation_id="new")
    await ctx.settle(client)
    pace = int(25 * ctx.stretch)
    await ctx.send_message(client, f"asp-fixture:slow 200 {pace}")
    started = await ctx.underway(client)
    sent = time.monotonic()
    await client.send({"type": "cancel", "run_id": started["run_id"]})
    complete = await ctx.completion(
        client, started["run_id"], "ASP-CAN-001", timeout=5, what="the cancelled run's complete"
    )
    took = (client.arrival(complete) or time.monotonic()) - sent
    await ctx.settle(client)
    if complete.get("finish_reason") != "cancelled":
        ctx.precondition(
            not ctx.completed_before(client, started["run_id"], sent),
            "the run completed before the cancel could reach the server",
        )
    ctx.check(
        complete.get("finish_reason") == "cancelled",
        "ASP-CAN-001",
        f"finish_reason {complete.get('finish_reason')!r}",
    )
    ctx.check(took <= 1.0, "ASP-CAN-004", f"the cancel took {took:.2f}s")
    streamed = text_of(client.events)
    if ctx.declares("history"):
        await client.close()
        history = await ctx.reopen_history(session["conversation_id"], "ASP-CAN-003")
        answers = assistant_text(history)
        ctx.check(answers == streamed, "ASP-CAN-003", "the text streamed before the cancel is stored")


@case(
    "runs.cancel_names_another_run",
    "a cancel naming a run that is not the active one gets no_active_run; the active run goes on",
    ["ASP-CAN-002"],
    fixtures=True,
)
async def cancel_names_another_run(ctx: CaseContext) -> None:
    client, _ = await ctx.connect(conversation_id="new")
    await ctx.settle(client)
    pace = int(25 * ctx.stretch)
    await ctx.send_message(client, f"asp-fixture:slow 20 {pace}")
    started = await ctx.underway(client, deltas=1, within=0.1)
    sent = time.monotonic()
    await client.send({"type": "cancel", "id": "kit-c-other", "run_id": "run_kit_not_the_active_one"})
    error = await ctx.expect(
        client,
        lambda e: e.get("type") == "error" and e.get("message_id") == "kit-c-other",
        "ASP-CAN-002",
        what="no_active_run for the cancel naming another run",
    )
    complete = await ctx.completion(client, started["run_id"], "ASP-RUN-004", lasts=20 * pace / 1000)
    await ctx.settle(client)
    ctx.precondition(
        not ctx.completed_before(client, started["run_id"], sent),
        "the run completed before the cancel could reach the server",
    )
    ctx.check(error.get("code") == "no_active_run", "ASP-CAN-002", f"code {error.get('code')!r}")
    ctx.check(
        complete.get("finish_reason") == "stop",
        "ASP-CAN-002",
        f"the active run ended {complete.get('finish_reason')!r}: a cancel naming another run stopped it",
    )


@case(
    "runs.cancel_without_run",
    "cancel with nothing to cancel gets no_active_run",
    ["ASP-CAN-002", "ASP-ERR-006", "ASP-ERR-012"],
)
async def cancel_without_run(ctx: CaseContext) -> None:
    client, _ = await ctx.connect()
    await client.send({"type": "cancel", "id": "kit-c1"})
    error = await ctx.expect(client, "error", "ASP-CAN-002")
    ctx.check(error.get("code") == "no_active_run", "ASP-CAN-002", f"code {error.get('code')!r}")
    ctx.check(error.get("message_id") == "kit-c1", "ASP-ERR-006", f"message_id {error.get('message_id')!r}")
    ctx.judge_answer(error, {"id": "kit-c1"})
    await client.send({"type": "cancel", "id": "kit-c2", "run_id": "run_that_does_not_exist"})
    error = await ctx.expect(client, "error", "ASP-CAN-002")
    ctx.check(error.get("code") == "no_active_run", "ASP-CAN-002", "a cancel naming an unknown run")
    ctx.judge_answer(error, {"id": "kit-c2"})
    await client.send({"type": "cancel"})
    error = await ctx.expect(client, "error", "ASP-CAN-002")
    ctx.check(error.get("code") == "no_active_run", "ASP-CAN-002", "a cancel without id")
    ctx.judge_answer(error, {})
