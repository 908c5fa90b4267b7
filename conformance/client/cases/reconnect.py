"""Close codes and reconnects: never after 4000/4001/4002, on demand after 4003, backoff with full
jitter after 1001/1012/1006 and unknown codes, at least 1000 ms after 1013 (ASP-CLS-003/004/006,
ASP-AUTH-009, ASP-DUP-004)."""

from __future__ import annotations

import asyncio
import time

from conformance.client.context import ANSWER_S, ScenarioContext
from conformance.client.scenarios import scenario
from conformance.client.server import Peer
from conformance.client.timing import RESET_AFTER_S, bounds, jitter
from spec.messages import CloseCodeName
from spec.registry import close_code, close_codes

# A client told never to reconnect has this long to show it (the fixed 3 s retry of the seed
# template would reconnect within it). Waiting longer proves little more and costs every run.
NEVER_WAIT_S = 3.5
# After 4003 the client must wait for its user: the kit waits this long before the user acts.
ON_DEMAND_WAIT_S = 2.5
UNKNOWN_CODE = 4099  # a 4000-range code no 1.x registry holds (minor versions add codes there)
DROP = "drop"  # end a connection by dropping TCP (the client sees 1006)
REFUSE = "refuse"  # answer the attempt with HTTP 503 (a browser sees 1006)
UNAUTHORIZED = close_code("unauthorized")
SUPERSEDED = close_code("superseded")
UNSUPPORTED = close_code("unsupported_version")
TRY_AGAIN_LATER = close_code("try_again_later")
IDLE_TIMEOUT = close_code("idle_timeout")
BACKOFF_CLOSES: dict[str, CloseCodeName] = {"going_away": "going_away", "service_restart": "service_restart"}


async def _never(
    ctx: ScenarioContext, name: CloseCodeName, requirements: list[str], *, in_session: bool
) -> None:
    code = close_code(name)
    peer = await ctx.first_connection()
    if in_session:
        await ctx.greet(peer)
        await ctx.settle(0.2)
    closed_at = await peer.close(code, name)
    attempts: list[float] = []
    deadline = closed_at + ctx.t(NEVER_WAIT_S)
    while (again := await ctx.server.next_peer(deadline - time.monotonic())) is not None:
        attempts.append((again.arrived - closed_at) * 1000)
        await again.close(code, name)  # the same answer, as a real server would give
    if attempts:
        shown = ", ".join(f"{a:.0f}" for a in attempts)
        message = (
            f"reconnected {len(attempts)} time(s) after close {code} ({name}, reconnect never), at {shown} ms"
        )
    else:
        message = f"no reconnect within {ctx.t(NEVER_WAIT_S):.1f} s of close {code} ({name}, reconnect never)"
    for requirement in requirements:
        ctx.check(not attempts, requirement, message)
    states = [r for r in ctx.client.records("state")]
    if states:
        ctx.note(f"the client reported {states[-1]}")


@scenario(
    "reconnect.never_after_4001",
    f"No reconnect after {UNAUTHORIZED} (unauthorized)",
    ["ASP-AUTH-009", "ASP-CLS-003"],
)
async def never_after_4001(ctx: ScenarioContext) -> None:
    await _never(ctx, "unauthorized", ["ASP-AUTH-009", "ASP-CLS-003"], in_session=False)


@scenario(
    "reconnect.never_after_4002",
    f"No reconnect after {SUPERSEDED} (superseded)",
    ["ASP-DUP-004", "ASP-CLS-003"],
)
async def never_after_4002(ctx: ScenarioContext) -> None:
    await _never(ctx, "superseded", ["ASP-DUP-004", "ASP-CLS-003"], in_session=True)


@scenario(
    "reconnect.never_after_4000", f"No reconnect after {UNSUPPORTED} (unsupported version)", ["ASP-CLS-003"]
)
async def never_after_4000(ctx: ScenarioContext) -> None:
    await _never(ctx, "unsupported_version", ["ASP-CLS-003"], in_session=False)


async def _reconnect(
    ctx: ScenarioContext,
    ended_at: float,
    attempt: int,
    requirement: str,
    after: str,
    *,
    floor_ms: float = 0.0,
) -> Peer | None:
    """Wait for the reconnect that follows an end at `ended_at` and judge its delay as attempt
    `attempt`; None when none came within its bounds (and 2 s more, to tell late from never)."""
    allowed = bounds(attempt, floor_ms=floor_ms, late_ms=ctx.late_ms)
    again = await ctx.server.next_peer(ended_at + allowed.high_ms / 1000 + ctx.t(2.0) - time.monotonic())
    if again is None:
        ctx.check(
            False,
            requirement,
            f"no reconnect within {allowed.high_ms / 1000 + ctx.t(2.0):.1f} s {after} ({allowed.rule})",
        )
        return None
    delay = (again.arrived - ended_at) * 1000
    ctx.check(allowed.holds(delay), requirement, f"reconnected {delay:.0f} ms {after} ({allowed.rule})")
    return again


@scenario(
    "reconnect.first_delay_after_1013",
    f"After {TRY_AGAIN_LATER} (try again later) the first reconnect waits at least "
    f"{close_codes()[TRY_AGAIN_LATER].min_delay_ms} ms",
    ["ASP-CLS-004"],
)
async def first_delay_after_1013(ctx: ScenarioContext) -> None:
    code = close_code("try_again_later")
    peer = await ctx.first_connection()
    ended_at = await peer.close(code, "try_again_later")  # refused at the handshake: no event
    floor = float(close_codes()[code].min_delay_ms)
    again = await _reconnect(ctx, ended_at, 0, "ASP-CLS-004", f"after close {code}", floor_ms=floor)
    if again is not None:
        await ctx.greet(again, capabilities=("history",))  # no resume to answer: not the subject here
        await ctx.settle(0.2)


@scenario(
    "reconnect.backoff",
    f"Reconnects after {close_code('going_away')}, {close_code('service_restart')} and drops back off "
    "exponentially with full jitter, "
    "reset after a connection that lived 10 s",
    ["ASP-CLS-004"],
    timeout_s=75.0,
)
async def backoff(ctx: ScenarioContext) -> None:
    # How each connection attempt ends, and the attempt number the reconnect after it has: the
    # fifth connection lives RESET_AFTER_S, so counting starts again after it.
    plan: list[tuple[str, int]] = [
        ("going_away", 0),
        ("service_restart", 1),
        (DROP, 2),
        ("going_away", 3),
        ("service_restart", 0),
        (REFUSE, 1),
        (DROP, 2),
        ("going_away", 3),
    ]
    peer = await ctx.first_connection()
    delays: list[tuple[float, int]] = []
    for number, (how, attempt) in enumerate(plan):
        if how != REFUSE:
            if not (how == DROP and number > 3):  # the second drop comes as the connection opens
                await ctx.greet(peer, capabilities=())
                await ctx.settle(0.1)
            if number == 4:
                await asyncio.sleep(RESET_AFTER_S + 0.5)  # real time: the client's clock, not ours
        if how == REFUSE:
            ended_at, word = peer.ended_at or peer.arrived, "after HTTP 503"
        elif how == DROP:
            ended_at, word = peer.abort(), "after a drop"
        else:
            code = close_code(BACKOFF_CLOSES[how])
            ended_at, word = await peer.close(code, how), f"after close {code}"
        if number + 1 < len(plan) and plan[number + 1][0] == REFUSE:
            ctx.server.refuse()
        if number == 4:
            word += f", the connection before having lived {RESET_AFTER_S:.0f} s (the count starts again)"
        again = await _reconnect(ctx, ended_at, attempt, "ASP-CLS-004", word)
        if again is None:
            return
        delays.append(((again.arrived - ended_at) * 1000, attempt))
        peer = again
    await ctx.greet(peer, capabilities=())
    verdict = jitter(delays, noise_ms=ctx.late_ms)
    ctx.check(verdict.jittered, "ASP-CLS-004", f"jitter over {len(delays)} reconnects: {verdict.description}")


@scenario(
    "reconnect.on_demand_after_4003",
    f"After {IDLE_TIMEOUT} (idle timeout) the client reconnects only when its user next sends",
    ["ASP-CLS-003"],
)
async def on_demand_after_4003(ctx: ScenarioContext) -> None:
    code = close_code("idle_timeout")
    peer = await ctx.first_connection()
    await ctx.greet(peer, capabilities=("history",))
    await ctx.settle(0.2)
    closed_at = await peer.close(code, "idle_timeout")
    early = await ctx.server.next_peer(ctx.t(ON_DEMAND_WAIT_S))
    if early is not None:
        ctx.check(
            False,
            "ASP-CLS-003",
            f"reconnected {(early.arrived - closed_at) * 1000:.0f} ms after close {code} "
            "(reconnect on demand) before its user did anything",
        )
        await early.close(code, "idle_timeout")
        return
    ctx.check(
        True,
        "ASP-CLS-003",
        f"no reconnect within {ctx.t(ON_DEMAND_WAIT_S):.1f} s of close {code} while its user did nothing",
    )
    sent_at = time.monotonic()
    await ctx.user_sends("back after a pause")
    again = await ctx.server.next_peer(ctx.t(ANSWER_S))
    if again is None:
        ctx.note(
            "the client did not reconnect within 5 s of its user sending "
            "(on demand allows that; the message may be lost)"
        )
        return
    ctx.note(f"reconnected {(again.arrived - sent_at) * 1000:.0f} ms after its user sent")
    await ctx.greet(again, capabilities=("history",))
    message = await again.next_message(("message",), ctx.t(ANSWER_S))
    if message is None:
        ctx.note("the message typed while disconnected was not sent on the new connection")
        return
    run = ctx.run_for(again, message)
    await ctx.play(again, run)
    report = await ctx.reported_run(run.run_id)
    ctx.note(f"the run answering it was reported: {report}")


@scenario(
    "reconnect.unknown_code_as_backoff",
    f"A close code the client does not know ({UNKNOWN_CODE}) is treated as backoff",
    ["ASP-CLS-006"],
)
async def unknown_code_as_backoff(ctx: ScenarioContext) -> None:
    peer = await ctx.first_connection()
    await ctx.greet(peer)
    await ctx.settle(0.2)
    ended_at = await peer.close(UNKNOWN_CODE, "a code of a later minor version")
    again = await _reconnect(ctx, ended_at, 0, "ASP-CLS-006", f"after the unknown close code {UNKNOWN_CODE}")
    if again is not None:
        await ctx.greet(again, capabilities=("history",))  # no resume to answer: not the subject here
        await ctx.settle(0.2)
