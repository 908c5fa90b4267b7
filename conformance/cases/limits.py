"""Connection limit and the order of refusals, message size, rate limit, event size."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

from conformance.context import ANSWER_S, CaseContext, how_closed, text_of
from conformance.credentials import Unavailable
from conformance.files import room_for
from conformance.gating import applies
from conformance.registry import case
from conformance.wire import AspClient, Closed, Event
from spec import SUBPROTOCOL
from spec.fixtures import fixture_text
from spec.registry import close_code

TRY_AGAIN_LATER = close_code("try_again_later")
UNAUTHORIZED = close_code("unauthorized")
UNSUPPORTED = close_code("unsupported_version")
SUPERSEDED = close_code("superseded")
IDLE_TIMEOUT = close_code("idle_timeout")

# What one connect of the connection-limit case got: the first event's type (or "closed:CODE",
# "silent", "refused: ..."), and the connection when one was opened.
Attempt = tuple[str, AspClient | None]
MESSAGE_TOO_BIG = close_code("message_too_big")
# Added when fewer than the limit are admitted: the kit cannot see the connections other clients of
# the server hold (another check, a load test, a browser), and they take slots too.
SHARED_SERVER = (
    " (other clients of this server hold slots too: a check needs a server no one else is using"
    " at that moment)"
)


@case(
    "limits.connection_limit",
    f"exactly max_connections of max+3 concurrent connects are admitted; the rest {TRY_AGAIN_LATER}; at "
    "the limit "
    "refusals keep their order and a superseding connection is admitted",
    ["ASP-LIM-001", "ASP-LIM-002", "ASP-LIM-008", "ASP-TRN-005", "ASP-LIM-007"],
    needs=("many_users",),
    exclusive=True,
)
async def connection_limit(ctx: CaseContext) -> None:
    limit = int(ctx.terms.max_connections or ctx.options.max_connections or 0)
    extra = 3
    seconds = ctx.scaled(ANSWER_S)
    # Each round holds limit + extra sockets, and the refusals at the limit three more.
    short = room_for(limit + extra + 3)
    if short:
        raise Unavailable(short)

    async def attempt(user: int) -> Attempt:
        try:
            client = await ctx.open(user)
        except Exception as exc:  # a refused handshake is already a finding
            return f"refused: {exc}", None
        try:
            event = await client.recv(seconds)
        except Closed:
            return f"closed:{client.close_code}", client
        except TimeoutError:
            return "silent", client
        return str(event.get("type")), client

    for round_number in range(2):
        ctx.allow(seconds * 2, f"round {round_number + 1} of concurrent connects")
        outcomes = await asyncio.gather(*[attempt(i) for i in range(limit + extra)])
        kinds = [kind for kind, _ in outcomes]
        admitted = kinds.count("session")
        ctx.check(
            admitted <= limit,
            "ASP-LIM-002",
            f"round {round_number + 1}: {admitted} admitted at once, limit {limit}",
        )
        # 1.1 settles "exact" both ways; a 1.0 server is judged only on never admitting more.
        ctx.check(
            admitted >= limit,
            "ASP-LIM-008",
            f"round {round_number + 1}: {admitted} admitted, limit {limit}"
            + (SHARED_SERVER if admitted < limit else ""),
        )
        ctx.check(
            kinds.count(f"closed:{TRY_AGAIN_LATER}") == limit + extra - admitted,
            "ASP-LIM-001",
            f"round {round_number + 1}: outcomes beyond the limit {sorted(set(kinds) - {'session'})}",
        )
        for kind, client in outcomes:
            if kind == f"closed:{TRY_AGAIN_LATER}" and client is not None:
                ctx.check(
                    client.events == [],
                    "ASP-LIM-001",
                    f"an event was sent before the {TRY_AGAIN_LATER} close",
                )
        held = [client for _, client in outcomes if client is not None]
        try:
            if round_number == 1 and admitted == limit and applies("ASP-TRN-005", ctx.terms.protocol_version):
                held += await _at_the_limit(ctx, outcomes, attempt)
        finally:
            ctx.allow(seconds, "closing the round's connections")
            await asyncio.gather(*[c.close() for c in held])
            await ctx.sleep(ctx.scaled(0.5), "the server to release the round's connections")


async def _at_the_limit(
    ctx: CaseContext, outcomes: list[Attempt], attempt: Callable[[int], Awaitable[Attempt]]
) -> list[AspClient]:
    """With the server at its limit (user i's connection got `outcomes[i]`): a refusal for several
    reasons gets the code of the first failing check, version, authentication, capacity
    (ASP-TRN-005); an admitted user's superseding connection is admitted and takes the old one's
    slot (ASP-LIM-007). Returns the connections it opened that may still be open."""
    kinds = [kind for kind, _ in outcomes]
    admitted = kinds.index("session")
    outside = next(user for user, kind in enumerate(kinds) if kind != "session")
    refusals = (
        ("an unauthenticated connection", None, (SUBPROTOCOL,), UNAUTHORIZED),
        ("an unsupported version without a token", None, ("asp.v99",), UNSUPPORTED),
        ("an unsupported version with a valid token", ctx.token(outside), ("asp.v99",), UNSUPPORTED),
    )
    opened: list[AspClient] = []
    for label, token, offered, expected in refusals:
        client = await ctx.open(token=token, subprotocols=offered, keepalive=False)
        opened.append(client)
        code = await ctx.closed_with(client)
        ctx.check(
            code == expected and client.events == [],
            "ASP-TRN-005",
            f"at the connection limit, {label}: {how_closed(client)} after {len(client.events)} "
            f"event(s), expected {expected} (checks run version, authentication, capacity)",
        )
    # An admitted user's new connection supersedes the old one: admitted though the server is full.
    kind, newer = await attempt(admitted)
    if newer is not None:
        opened.append(newer)
    ctx.check(
        kind == "session",
        "ASP-LIM-007",
        f"at the connection limit, a user's superseding connection got {kind}, expected its "
        "session (it takes the slot of the connection it supersedes)",
    )
    older = outcomes[admitted][1]
    if kind == "session" and older is not None:
        code = await ctx.closed_with(older)
        # Closed for idleness before the newer connection arrived: the kit's keepalive pings came
        # late (a starved machine, a short idle timeout), which is legal; no evidence either way,
        # and the duplicates cases judge ASP-DUP-001 on their own.
        if code != IDLE_TIMEOUT:
            ctx.check(code == SUPERSEDED, "ASP-DUP-001", f"the superseded connection {how_closed(older)}")
    return opened


def _ping_of(size: int, pad: str = "a") -> str:
    """A ping whose UTF-8 JSON is exactly `size` bytes, padded with `pad` (one or two bytes a
    character) and one ASCII byte where the size needs it."""
    empty = json.dumps({"type": "ping", "id": "sized", "x-pad": ""}, ensure_ascii=False)
    room = size - len(empty.encode())
    width = len(pad.encode())
    padding = pad * (room // width) + "a" * (room % width)
    frame = json.dumps({"type": "ping", "id": "sized", "x-pad": padding}, ensure_ascii=False)
    assert len(frame.encode()) == size
    return frame


def _fragments(text: str, count: int = 4) -> list[str]:
    step = max(1, len(text) // count)
    return [text[i : i + step] for i in range(0, len(text), step)]


async def _sized_pong(ctx: CaseContext, client: AspClient, requirement: str, what: str) -> None:
    pong = await ctx.expect(
        client,
        lambda e: e.get("type") == "pong" and e.get("id") == "sized",
        requirement,
        what=f"pong to {what}",
    )
    ctx.check(pong.get("id") == "sized", requirement, f"{what} was served")


@case(
    "limits.frame_size",
    "a message of max_message_bytes is accepted, whole or fragmented; one byte more closes "
    f"{MESSAGE_TOO_BIG}",
    ["ASP-LIM-003", "ASP-LIM-010"],
)
async def frame_size(ctx: CaseContext) -> None:
    limit = ctx.terms.max_message_bytes or 0
    ctx.require(limit >= 64, "ASP-SES-002", "the session announces max_message_bytes")
    if limit > 16 * 1024 * 1024:
        raise Unavailable(f"max_message_bytes {limit} is more than the kit sends (16 MiB)")
    client, _ = await ctx.connect()
    await client.send(_ping_of(limit))
    await _sized_pong(ctx, client, "ASP-LIM-003", "a frame of exactly max_message_bytes")
    await client.send(_ping_of(limit + 1))
    code = await ctx.closed_with(client)
    ctx.check(
        code == MESSAGE_TOO_BIG,
        "ASP-LIM-003",
        f"a frame one byte over the limit: the connection {how_closed(client)}, expected {MESSAGE_TOO_BIG}",
    )
    if not applies("ASP-LIM-010", ctx.terms.protocol_version):
        return  # 1.0 left open whether the limit is a frame's or a message's
    # The whole message counts, in bytes: fragments reassembled, two-byte characters two bytes.
    client, _ = await ctx.connect()
    await client.send_fragments(_fragments(_ping_of(limit, "\u00e9")))
    await _sized_pong(ctx, client, "ASP-LIM-010", "a fragmented message of exactly max_message_bytes")
    await client.send_fragments(_fragments(_ping_of(limit + 1, "\u00e9")))
    code = await ctx.closed_with(client)
    ctx.check(
        code == MESSAGE_TOO_BIG,
        "ASP-LIM-010",
        f"a message one byte over the limit in {len(_fragments(_ping_of(limit + 1, 'é')))} fragments, of "
        f"{len(_ping_of(limit + 1, 'é'))} characters: the connection {how_closed(client)}, expected "
        f"{MESSAGE_TOO_BIG} (the limit counts bytes of the whole message)",
    )


async def _over_limit(
    ctx: CaseContext, client: AspClient, identity: str, began: float, message_id: str
) -> Event:
    """Send a message beyond the user's limit (unpaced) and return the server's answer to it; the
    premise is that the window that began at `began` still holds every message sent."""
    rate = ctx.terms.rate_limit
    assert rate is not None
    ctx.pacer.record(identity)
    sent = time.monotonic()
    await client.send({"type": "message", "id": message_id, "content": "asp-fixture:text 1"})
    answer = await ctx.expect(
        client,
        lambda e: e.get("type") in ("error", "run_started"),
        "ASP-LIM-004",
        what=f"an answer to message {message_id!r}, over the limit",
    )
    await ctx.settle(client)
    ctx.precondition(
        sent - began < rate.window_s * 0.8,
        f"message {message_id!r} went {sent - began:.1f}s into the {rate.window_s:g}s window",
    )
    return answer


UNCOUNTED = "messages that started no run (invalid, or refused with run_in_progress) were counted"


async def _counted_run(
    ctx: CaseContext, client: AspClient, content: str, message_id: str, why: str = UNCOUNTED
) -> Event:
    """Start a run within the user's limit; its refusal for the rate is a finding against
    ASP-LIM-009 (`why` says which of its rules was broken) and ends the case."""
    await client.send({"type": "message", "id": message_id, "content": content})
    answer = await ctx.expect(
        client,
        lambda e: e.get("type") == "run_started" or e.get("message_id") == message_id,
        "ASP-MSG-001",
        what=f"run_started for message {message_id!r}",
    )
    if answer.get("code") == "rate_limited":
        ctx.fail(
            "ASP-LIM-009",
            f"message {message_id!r} was refused for the rate ({answer.get('retry_after_ms')!r} ms to "
            f"wait): {why}",
        )
    ctx.require(answer.get("type") == "run_started", "ASP-MSG-001", f"message {message_id!r} got {answer}")
    return answer


async def _uncounted_refusals(ctx: CaseContext, client: AspClient, messages: int) -> None:
    """Messages that start no run, as many as the limit: none of them counts (ASP-LIM-009)."""
    for number in range(messages):
        await client.send({"type": "message", "id": f"kit-rate-invalid-{number}", "content": ""})
        error = await ctx.expect(client, "error", "ASP-ERR-004", what="invalid_message for an empty content")
        ctx.check(error.get("code") == "invalid_message", "ASP-ERR-004", f"code {error.get('code')!r}")


async def _fill_the_window(ctx: CaseContext, client: AspClient, messages: int, identity: str) -> None:
    """Start `messages` runs; the last one is slow, and a message sent during it must be refused
    with run_in_progress, which comes before the rate limit in the order of checks and counts not."""
    for number in range(messages - 1):
        ctx.pacer.record(identity)
        started = await _counted_run(ctx, client, "asp-fixture:text 1", f"kit-rate-{number}")
        await ctx.completion(client, started["run_id"])
    pace = int(50 * ctx.stretch)
    ctx.pacer.record(identity)
    started = await _counted_run(ctx, client, f"asp-fixture:slow 10 {pace}", "kit-rate-last")
    sent = time.monotonic()
    await client.send({"type": "message", "id": "kit-rate-during", "content": "asp-fixture:text 1"})
    answer = await ctx.expect(
        client,
        lambda e: e.get("message_id") == "kit-rate-during",
        "ASP-RUN-002",
        what="an answer to the message sent during the run",
    )
    if answer.get("code") != "run_in_progress":
        ctx.precondition(
            not ctx.completed_before(client, started["run_id"], sent),
            "the last run completed before the message sent during it could reach the server",
        )
    ctx.check(
        answer.get("code") == "run_in_progress",
        "ASP-LIM-009",
        f"at the rate limit, a message during a run got {answer.get('type')} {answer.get('code', '')}: "
        "run_in_progress is checked before the rate limit",
    )
    await ctx.completion(client, started["run_id"], lasts=10 * pace / 1000)
    await ctx.settle(client)


@case(
    "limits.rate_limit",
    "a message over the user's rate limit gets rate_limited with retry_after_ms, on any connection; "
    "only runs count, and a message after retry_after_ms is served",
    ["ASP-LIM-004", "ASP-LIM-009", "ASP-ERR-012"],
    fixtures=True,
    order=9,
)
async def rate_limit(ctx: CaseContext) -> None:
    rate = ctx.terms.rate_limit
    ctx.require(rate is not None, "ASP-SES-002", "the session announces rate_limit")
    assert rate is not None
    if rate.messages > 200:
        raise Unavailable(f"rate_limit.messages is {rate.messages}; this case sends that many (at most 200)")
    identity = ctx.credentials.identity(ctx.index, 0)
    await ctx.pacer.clear(identity, ctx.allow)
    client, _ = await ctx.connect(conversation_id="new")
    client.before_send = None  # this case goes over the limit on purpose
    began = time.monotonic()
    sliding = applies("ASP-LIM-009", ctx.terms.protocol_version)
    if sliding:
        await _uncounted_refusals(ctx, client, rate.messages)
        await _fill_the_window(ctx, client, rate.messages, identity)
    else:
        for number in range(rate.messages):
            ctx.pacer.record(identity)
            await ctx.run(client, "asp-fixture:text 1", message_id=f"kit-rate-{number}")
    answer = await _over_limit(ctx, client, identity, began, "kit-rate-over")
    ctx.check(
        answer.get("type") == "error" and answer.get("code") == "rate_limited",
        "ASP-LIM-004",
        f"message {rate.messages + 1} within the window got {answer.get('type')} {answer.get('code', '')}",
    )
    if answer.get("type") != "error":
        return
    ctx.judge_answer(answer, {"id": "kit-rate-over"})
    refused_at = client.arrival(answer) or time.monotonic()
    retry = answer.get("retry_after_ms")
    ctx.check(
        isinstance(retry, int) and 0 < retry <= rate.window_s * 1000,
        "ASP-LIM-004",
        f"retry_after_ms {retry!r}",
    )
    await ctx.alive(client, "ASP-LIM-004")
    # The limit is the user's: a new connection of the same user is refused as well.
    again, _ = await ctx.connect(conversation_id="new")
    again.before_send = None
    answer = await _over_limit(ctx, again, identity, began, "kit-rate-again")
    ctx.check(
        answer.get("type") == "error" and answer.get("code") == "rate_limited",
        "ASP-LIM-004",
        f"over the user's limit on a new connection: got {answer.get('type')} {answer.get('code', '')} "
        "(the limit is per user, not per connection)",
    )
    if not sliding or not isinstance(retry, int) or retry <= 0 or retry / 1000 > ctx.options.max_wait_s:
        return  # waiting out retry_after_ms takes longer than --max-wait
    # retry_after_ms is the time until the oldest counted run leaves the window: then a message is served.
    margin = ctx.scaled(0.05) + (again.round_trip or 0.05)
    await ctx.sleep(max(0.0, refused_at + retry / 1000 + margin - time.monotonic()), "retry_after_ms")
    ctx.pacer.record(identity)
    started = await _counted_run(
        ctx,
        again,
        "asp-fixture:text 1",
        "kit-rate-after",
        f"it was sent {retry} ms after the refusal that gave retry_after_ms {retry}",
    )
    await ctx.completion(again, started["run_id"])


BULK_SIZE = 65536  # the largest token of asp-fixture:bulk: one token over the smallest legal max_event_bytes
MIN_ENTRY_ROOM = 2048  # room in which an entry too large alone is shortened, not left out (section 13)
ENVELOPE_SLACK = 256  # the kit's estimate of that room may be off by the envelope and seq


@case(
    "limits.event_size",
    "no server event exceeds the announced max_event_bytes: deltas are split, history shortened and marked",
    ["ASP-LIM-011"],
    fixtures=True,
)
async def event_size(ctx: CaseContext) -> None:
    limit = ctx.limits.get("max_event_bytes")
    ctx.require(
        isinstance(limit, int) and not isinstance(limit, bool) and limit >= 65536,
        "ASP-LIM-011",
        f"session.limits.max_event_bytes is {limit!r}, expected an integer of at least 65536",
    )
    assert isinstance(limit, int)
    if limit > 16 * 1024 * 1024:
        raise Unavailable(f"max_event_bytes {limit} is more than the kit provokes (16 MiB)")
    tokens = limit // BULK_SIZE + 2  # the run's text alone is larger than any one event may be
    whole = ("b" * (BULK_SIZE - 1) + " ") * tokens
    client, session = await ctx.connect(conversation_id="new")
    events = await ctx.run(client, f"asp-fixture:bulk {tokens} {BULK_SIZE}")
    ctx.check(
        text_of(events) == whole,
        "ASP-LIM-011",
        f"the deltas of a run of {len(whole)} characters rebuild {len(text_of(events))} of them: text "
        "deltas are split, never truncated",
    )
    if ctx.declares("history"):
        await ctx.run(client, "asp-fixture:text 1")
        await client.close()
        again, _ = await ctx.connect(conversation_id=session["conversation_id"])
        history = await ctx.expect(again, "history", "ASP-SES-005")
        await ctx.settle(again)
        entries = [m for m in history.get("messages", []) if isinstance(m, dict)]
        ctx.check(
            [m.get("content") for m in entries[-2:]] == ["asp-fixture:text 1", fixture_text(1)],
            "ASP-LIM-011",
            "history keeps the newest entries that fit: the last exchange is its last two entries",
        )
        big = [m for m in entries if m.get("role") == "assistant" and len(str(m.get("content", ""))) > 100]
        if big:
            content = str(big[0].get("content", ""))
            ctx.check(
                big[0].get("truncated") is True and whole.startswith(content) and len(content) < len(whole),
                "ASP-LIM-011",
                f"an entry of {len(whole)} characters, too large alone, is in history with "
                f"{len(content)} characters and truncated {big[0].get('truncated')!r}: it is shortened, "
                "keeps its beginning and is marked",
            )
        else:
            # The newer entries leave nearly all of max_event_bytes: far more than the 2048 bytes in
            # which an entry too large alone must be shortened rather than left out.
            room = limit - len(json.dumps({**history, "messages": entries[-2:]}).encode())
            ctx.check(
                room < MIN_ENTRY_ROOM + ENVELOPE_SLACK,
                "ASP-LIM-011",
                f"an entry of {len(whole)} characters, too large alone, was left out of history "
                f"(truncated {history.get('truncated')!r}, omitted {history.get('omitted')!r}) though the "
                f"newer entries left about {room} bytes: it is shortened into that room, keeping its "
                "beginning, and marked truncated",
            )
        if len(entries) < 4:
            ctx.check(
                history.get("truncated") is True
                and isinstance(history.get("omitted"), int)
                and history["omitted"] >= 1,
                "ASP-LIM-011",
                f"history of {len(entries)} entries left entries out with truncated "
                f"{history.get('truncated')!r} and omitted {history.get('omitted')!r}",
            )
    for held in ctx.clients:
        sizes = [len(f.text.encode()) for f in held.transcript.frames if f.direction == "recv" and f.text]
        ctx.check(
            max(sizes, default=0) <= limit,
            "ASP-LIM-011",
            f"the largest server event was {max(sizes, default=0)} bytes; max_event_bytes is {limit}",
        )
