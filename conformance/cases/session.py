"""Session start: identity, unique ids, history placement, foreign conversations."""

from __future__ import annotations

from conformance.context import CaseContext, turns
from conformance.registry import case


@case(
    "session.user_is_the_subject",
    "session.user.id is the token's subject",
    ["ASP-SES-003"],
    needs=("jwt_secret",),
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
    ["ASP-SES-005", "ASP-HIS-002", "ASP-HIS-001"],
    capabilities=("history",),
)
async def history_follows_session(ctx: CaseContext) -> None:
    client, session = await ctx.connect(conversation_id="new")
    await ctx.run(client, "hello from the conformance kit")
    await client.close()
    again, _ = await ctx.connect(conversation_id=session["conversation_id"])
    history = await ctx.expect(again, "history", "ASP-SES-005", timeout=5)
    ctx.check(history.get("seq") == 2, "ASP-SES-005", f"history has seq {history.get('seq')}, expected 2")
    users = turns(history, "user")
    ctx.check(users == ["hello from the conformance kit"], "ASP-HIS-002", f"user turns in history: {users}")


@case(
    "session.foreign_conversation",
    "another user's conversation id binds a new conversation and errors",
    ["ASP-SES-006", "ASP-HIS-005", "ASP-SEC-003"],
    capabilities=("history",),
    needs=("two_users",),
    connections=2,
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
