"""Session start: identity, unique ids, history placement, which conversation a session binds."""

from __future__ import annotations

from conformance.context import CaseContext, turns
from conformance.registry import case
from conformance.wire import AspClient


@case(
    "session.user_is_the_subject",
    "session.user.id is the token's subject",
    ["ASP-SES-003"],
)
async def user_is_subject(ctx: CaseContext) -> None:
    _, session = await ctx.connect()
    expected = ctx.credentials.user_name(ctx.index, 0)
    ctx.check(
        session.get("user", {}).get("id") == expected,
        "ASP-SES-003",
        f"user.id {session.get('user', {}).get('id')!r}, token subject {expected!r}",
    )


@case("session.unique_ids", "every connection gets a new session_id", ["ASP-SES-004"])
async def unique_ids(ctx: CaseContext) -> None:
    seen = []
    for _ in range(3):
        client, session = await ctx.connect()
        seen.append(session.get("session_id"))
        await client.close()
    ctx.check(len(set(seen)) == len(seen), "ASP-SES-004", f"session ids {seen}")


@case(
    "session.history_follows_session",
    "a stored conversation comes back as history right after session",
    ["ASP-SES-005", "ASP-HIS-002", "ASP-HIS-001", "ASP-SES-008"],
)
async def history_follows_session(ctx: CaseContext) -> None:
    client, session = await ctx.connect(conversation_id="new")
    await ctx.run(client, "hello from the conformance kit")
    await client.close()
    again, bound = await ctx.connect(conversation_id=session["conversation_id"])
    ctx.check(
        bound.get("conversation_id") == session["conversation_id"],
        "ASP-SES-008",
        f"conversation_id={session['conversation_id']!r}, the user's own, bound the session to "
        f"{bound.get('conversation_id')!r}",
    )
    history = await ctx.expect(again, "history", "ASP-SES-005", timeout=5)
    ctx.check(history.get("seq") == 2, "ASP-SES-005", f"history has seq {history.get('seq')}, expected 2")
    users = turns(history, "user")
    ctx.check(users == ["hello from the conformance kit"], "ASP-HIS-002", f"user turns in history: {users}")


@case(
    "session.foreign_conversation",
    "another user's conversation id binds a new conversation and errors",
    ["ASP-SES-006", "ASP-HIS-005", "ASP-SEC-003"],
)
async def foreign_conversation(ctx: CaseContext) -> None:
    owner, session = await ctx.connect(0, conversation_id="new")
    await ctx.run(owner, "private words of the owner")
    await owner.close()
    intruder, intruder_session = await ctx.connect(1, conversation_id=session["conversation_id"])
    ctx.check(
        intruder_session.get("conversation_id") != session["conversation_id"],
        "ASP-SES-006",
        "the intruder's session is bound to a different conversation",
    )
    error = await ctx.expect(intruder, "error", "ASP-SES-006", timeout=5)
    ctx.check(
        error.get("code") == "conversation_not_found", "ASP-SES-006", f"error code {error.get('code')!r}"
    )
    await ctx.alive(intruder, "ASP-SES-006")
    ctx.check(
        not any(e.get("type") == "history" for e in intruder.events),
        "ASP-HIS-005",
        "the intruder received a history",
    )
    ctx.check(
        "private words" not in str(intruder.events), "ASP-SEC-003", "the owner's words reached the intruder"
    )


def _history_sent(client: AspClient) -> bool:
    return client.arrived(lambda e: e.get("type") == "history") is not None


async def _written_conversation(ctx: CaseContext) -> str:
    """A new conversation of user 0 with one exchange stored in it; returns its id."""
    client, session = await ctx.connect(conversation_id="new")
    await ctx.run(client, "words for the conformance kit to find again")
    await client.close()
    return str(session["conversation_id"])


@case(
    "session.new_conversation",
    "conversation_id=new binds a new empty conversation, never an earlier one",
    ["ASP-SES-007"],
)
async def new_conversation(ctx: CaseContext) -> None:
    seen = {await _written_conversation(ctx)}
    for attempt in range(2):
        client, session = await ctx.connect(conversation_id="new")
        await ctx.settle(client)
        bound = str(session.get("conversation_id"))
        ctx.check(
            bound not in seen,
            "ASP-SES-007",
            f"conversation_id=new (attempt {attempt + 1}) bound {bound!r}, which an earlier session had",
        )
        ctx.check(
            not _history_sent(client),
            "ASP-SES-007",
            f"conversation_id=new (attempt {attempt + 1}) was followed by a history",
        )
        seen.add(bound)
        await client.close()


@case(
    "session.last_bound_conversation",
    "without conversation_id the session binds the user's last bound conversation, written or not",
    ["ASP-SES-009"],
)
async def last_bound_conversation(ctx: CaseContext) -> None:
    written = await _written_conversation(ctx)
    client, session = await ctx.connect(conversation_id="new")
    empty = session.get("conversation_id")
    await client.close()
    client, session = await ctx.connect()
    await ctx.settle(client)
    ctx.check(
        session.get("conversation_id") == empty,
        "ASP-SES-009",
        f"a plain reconnect bound {session.get('conversation_id')!r}; the last bound conversation is "
        f"{empty!r} (empty; the last written one is {written!r})",
    )
    ctx.check(
        not _history_sent(client), "ASP-SES-009", "the last bound conversation is empty, yet a history came"
    )


@case(
    "session.malformed_conversation_id",
    "an empty or malformed conversation_id is an unknown one: a new conversation and conversation_not_found",
    ["ASP-SES-010", "ASP-ERR-012"],
)
async def malformed_conversation_id(ctx: CaseContext) -> None:
    written = await _written_conversation(ctx)
    for value in ("", "not a conversation id!"):
        client, session = await ctx.connect(conversation_id=value)
        error = await ctx.expect(
            client,
            lambda e: e.get("type") in ("error", "history"),
            "ASP-SES-010",
            what=f"error conversation_not_found for conversation_id={value!r}",
        )
        ctx.check(
            error.get("type") == "error" and error.get("code") == "conversation_not_found",
            "ASP-SES-010",
            f"conversation_id={value!r} got {error.get('type')} {error.get('code', '')}, expected "
            "error conversation_not_found",
        )
        if error.get("type") == "error":
            ctx.judge_answer(error, None)
        ctx.check(
            session.get("conversation_id") != written,
            "ASP-SES-010",
            f"conversation_id={value!r} bound the user's last conversation {written!r}, not a new one",
        )
        await client.close()
