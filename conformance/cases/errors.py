"""Bad input, hand-written and generated: each gets its error code and the connection survives,
except text that is not UTF-8, which fails the connection with 1007 (ASP-TRN-004)."""

from __future__ import annotations

import json

from conformance.context import CaseContext, how_closed, turns
from conformance.generate import HISTORY_PROBES, HISTORY_SEED, Probe, invalid_probes, valid_probes
from conformance.registry import case
from conformance.wire import AspClient, Closed
from spec.registry import close_code, error_requirement

INVALID_PAYLOAD = close_code("invalid_payload")


def _affordable(ctx: CaseContext, probes: tuple[Probe, ...], keep: int = 0) -> list[Probe]:
    """The probes, with the invalid `message` frames a 1.0 server may count against the user's rate
    limit cut to what it holds now (less `keep` for the case's valid messages)."""
    room = ctx.pacer.room(ctx.credentials.identity(ctx.index)) if ctx.pacer.counts_invalid else None
    if room is None:
        return list(probes)
    budget = max(0, room - keep - 1)
    kept: list[Probe] = []
    for probe in probes:
        if ctx.pacer.counts(probe.frame):
            if budget == 0:
                continue
            budget -= 1
        kept.append(probe)
    return kept


async def _answered(ctx: CaseContext, probe: Probe, client_holder: list[AspClient]) -> None:
    """Send one probe; expect its error and a live connection. A dead connection is replaced."""
    client = client_holder[0]
    requirement = error_requirement(probe.expected_code)
    await client.send(probe.frame)
    try:
        error = await ctx.within(client.expect("error", ctx.scaled(5)), ctx.scaled(6), "an error event")
    except (TimeoutError, Closed) as problem:
        # A close is worded as every finding words it: a close frame's code, or none came (1006).
        gone = f"the connection {how_closed(client)}" if isinstance(problem, Closed) else str(problem)
        ctx.check(False, requirement, f"no error event for {probe.describe()} ({gone})")
        if client.close_code is not None:
            client_holder[0], _ = await ctx.connect()
        return
    ctx.check(
        error.get("code") == probe.expected_code,
        requirement,
        f"{probe.describe()} got {error.get('code')!r}, expected {probe.expected_code!r}",
    )
    ctx.check("run_id" not in error, "ASP-ERR-007", f"{probe.describe()}: error outside a run names a run")
    ctx.judge_answer(error, probe.frame if isinstance(probe.frame, str) else None)


@case(
    "errors.invalid_json",
    "non-JSON text gets invalid_json; the connection stays",
    ["ASP-ERR-002", "ASP-ERR-001", "ASP-ERR-012"],
)
async def invalid_json(ctx: CaseContext) -> None:
    client, _ = await ctx.connect()
    await client.send("this is not json")
    error = await ctx.expect(client, "error", "ASP-ERR-002")
    ctx.judge_answer(error, None)
    ctx.check(error.get("code") == "invalid_json", "ASP-ERR-002", f"code {error.get('code')!r}")
    ctx.check(error.get("retryable") is False, "ASP-ERR-001", "invalid input is not retryable")
    await ctx.alive(client, "ASP-ERR-002")


@case("errors.binary_frame", "a binary frame gets unsupported_frame; the connection stays", ["ASP-ERR-003"])
async def binary_frame(ctx: CaseContext) -> None:
    client, _ = await ctx.connect()
    await client.send(b"\x89PNG\r\n")
    error = await ctx.expect(client, "error", "ASP-ERR-003")
    ctx.check(error.get("code") == "unsupported_frame", "ASP-ERR-003", f"code {error.get('code')!r}")
    await ctx.alive(client, "ASP-ERR-003")


@case(
    "errors.schema_invalid",
    "a known type breaking its schema gets invalid_message with the message_id",
    ["ASP-ERR-004", "ASP-ERR-006", "ASP-ERR-012"],
)
async def schema_invalid(ctx: CaseContext) -> None:
    client, _ = await ctx.connect()
    sent = {"type": "message", "id": "kit-bad-1", "content": ""}
    await client.send(json.dumps(sent))
    error = await ctx.expect(client, "error", "ASP-ERR-004")
    ctx.check(error.get("code") == "invalid_message", "ASP-ERR-004", f"code {error.get('code')!r}")
    ctx.check(
        error.get("message_id") == "kit-bad-1", "ASP-ERR-006", f"message_id {error.get('message_id')!r}"
    )
    ctx.judge_answer(error, sent)
    # Without an id, or with one that is not a valid identifier, the error carries no message_id.
    no_id = {"type": "message", "content": ""}
    unnamed_frames = (no_id, {**no_id, "id": "not an id"})
    for unnamed in unnamed_frames:
        await client.send(json.dumps(unnamed))
        error = await ctx.expect(client, "error", "ASP-ERR-004")
        ctx.check(error.get("code") == "invalid_message", "ASP-ERR-004", f"code {error.get('code')!r}")
        ctx.judge_answer(error, unnamed)
    await ctx.alive(client, "ASP-ERR-004")


@case(
    "errors.unknown_type",
    "an unknown or missing type gets unknown_type; the connection stays",
    ["ASP-ERR-005", "ASP-ERR-006"],
)
async def unknown_type(ctx: CaseContext) -> None:
    client, _ = await ctx.connect()
    await client.send(json.dumps({"type": "subscribe", "id": "kit-u1"}))
    error = await ctx.expect(client, "error", "ASP-ERR-005")
    ctx.check(error.get("code") == "unknown_type", "ASP-ERR-005", f"code {error.get('code')!r}")
    ctx.check(error.get("message_id") == "kit-u1", "ASP-ERR-006", f"message_id {error.get('message_id')!r}")
    await client.send(json.dumps({"content": "no type at all"}))
    error = await ctx.expect(client, "error", "ASP-ERR-005")
    ctx.check(error.get("code") == "unknown_type", "ASP-ERR-005", "a missing type is an unknown type")
    await ctx.alive(client, "ASP-ERR-005")


@case(
    "errors.generated_invalid_input",
    "generated invalid input: every frame answered by its error code",
    ["ASP-ERR-002", "ASP-ERR-003", "ASP-ERR-004", "ASP-ERR-005", "ASP-ERR-007", "ASP-ERR-012"],
)
async def generated_invalid(ctx: CaseContext) -> None:
    probes = _affordable(ctx, invalid_probes(ctx.options.fuzz_examples))  # before any connection is held
    client, _ = await ctx.connect()
    holder = [client]
    for number, probe in enumerate(probes):
        await _answered(ctx, probe, holder)
        if number % 10 == 9:
            await ctx.alive(holder[0], error_requirement(probe.expected_code), f"alive-{number}")
    await ctx.alive(holder[0], "ASP-ERR-004", "alive-end")


@case(
    "errors.generated_valid_input",
    "generated valid pings and cancels each get their answer",
    ["ASP-MSG-003", "ASP-CAN-002"],
    capabilities=("cancel",),
)
async def generated_valid(ctx: CaseContext) -> None:
    probes = valid_probes(max(4, ctx.options.fuzz_examples // 4))
    client, _ = await ctx.connect()
    for name, message in probes:
        await client.send(json.dumps(message))
        if name == "ping":
            pong = await ctx.expect(client, "pong", "ASP-MSG-003", what=f"pong for {message}")
            ctx.check(pong.get("id") == message.get("id"), "ASP-MSG-003", f"pong id for {message}")
        else:
            error = await ctx.expect(client, "error", "ASP-CAN-002", what=f"no_active_run for {message}")
            ctx.check(
                error.get("code") == "no_active_run", "ASP-CAN-002", f"{message} got {error.get('code')!r}"
            )


@case(
    "errors.history_survives_bad_input",
    "bad input never costs stored history",
    ["ASP-ERR-009"],
)
async def history_survives(ctx: CaseContext) -> None:
    probes = _affordable(ctx, invalid_probes(HISTORY_PROBES, HISTORY_SEED), keep=1)
    client, session = await ctx.connect(conversation_id="new")
    await ctx.run(client, "keep this message")
    holder = [client]
    for probe in probes:
        await _answered(ctx, probe, holder)
    await holder[0].close()
    history = await ctx.reopen_history(session["conversation_id"], "ASP-ERR-009")
    users = turns(history, "user")
    ctx.check(users == ["keep this message"], "ASP-ERR-009", f"stored user turns after bad input: {users}")


@case(
    "errors.invalid_utf8",
    f"a text frame that is not valid UTF-8 fails the connection with {INVALID_PAYLOAD}",
    ["ASP-TRN-004"],
)
async def invalid_utf8(ctx: CaseContext) -> None:
    client, _ = await ctx.connect(keepalive=False)
    await client.send_text_bytes(b'{"type": "ping", "id": "kit-\xff\xfe"}')
    code = await ctx.closed_with(client)
    ctx.check(
        code == INVALID_PAYLOAD,
        "ASP-TRN-004",
        f"a text frame with invalid UTF-8: the connection {how_closed(client)}, expected {INVALID_PAYLOAD} "
        f"(events before: {[e.get('type') for e in client.events]})",
    )
