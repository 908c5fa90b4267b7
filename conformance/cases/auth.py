"""Authentication: every bad token class is accepted at HTTP level, gets no event, closes 4001;
which token counts when two are offered."""

from __future__ import annotations

import time

from conformance.context import CaseContext, how_closed
from conformance.credentials import Unavailable
from conformance.registry import case
from spec import SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX
from spec.registry import close_code

UNAUTHORIZED = close_code("unauthorized")


async def _refused(ctx: CaseContext, token: str | None, requirement: str, label: str) -> None:
    client = await ctx.open(token=token, requirement="ASP-TRN-002", keepalive=False)
    code = await ctx.closed_with(client)
    ctx.check(code == UNAUTHORIZED, requirement, f"{label}: {how_closed(client)}, expected {UNAUTHORIZED}")
    ctx.check(
        client.events == [], requirement, f"{label}: {len(client.events)} event(s) sent before the close"
    )


@case("auth.query_token", "a valid token in the token query parameter authenticates", ["ASP-AUTH-001"])
async def query_token(ctx: CaseContext) -> None:
    _, session = await ctx.connect(token_in="query", requirement="ASP-AUTH-001")
    ctx.check(session.get("type") == "session", "ASP-AUTH-001", "session after a query-parameter token")


@case(
    "auth.missing_token",
    f"no token: accepted, no event, closed {UNAUTHORIZED}",
    ["ASP-AUTH-003", "ASP-TRN-002"],
)
async def missing_token(ctx: CaseContext) -> None:
    await _refused(ctx, None, "ASP-AUTH-003", "no token")


@case("auth.garbage_token", f"a malformed token: accepted, no event, closed {UNAUTHORIZED}", ["ASP-AUTH-003"])
async def garbage_token(ctx: CaseContext) -> None:
    await _refused(ctx, "this-is-not-a-valid-token", "ASP-AUTH-003", "malformed token")


@case("auth.forged_token", f"a JWT signed with the wrong secret: closed {UNAUTHORIZED}", ["ASP-AUTH-003"])
async def forged_token(ctx: CaseContext) -> None:
    await _refused(
        ctx, ctx.credentials.forged(ctx.terms.user_id or "asp-kit"), "ASP-AUTH-003", "forged token"
    )


@case("auth.alg_none", f"a JWT with alg none: closed {UNAUTHORIZED}", ["ASP-AUTH-005"])
async def alg_none(ctx: CaseContext) -> None:
    await _refused(ctx, ctx.credentials.unsigned(ctx.terms.user_id or "asp-kit"), "ASP-AUTH-005", "alg none")


@case("auth.expired_token", f"an expired token: closed {UNAUTHORIZED}", ["ASP-AUTH-006"])
async def expired_token(ctx: CaseContext) -> None:
    token = ctx.credentials.mint({"sub": ctx.credentials.user_name(ctx.index, 0)}, ttl=-60)
    await _refused(ctx, token, "ASP-AUTH-006", "expired token")


@case("auth.no_subject", f"a token naming no user: closed {UNAUTHORIZED}", ["ASP-AUTH-004"])
async def no_subject(ctx: CaseContext) -> None:
    await _refused(ctx, ctx.credentials.mint({}), "ASP-AUTH-004", "token without sub")
    await _refused(ctx, ctx.credentials.mint({"sub": ""}), "ASP-AUTH-004", "token with an empty sub")


@case(
    "auth.subprotocol_token_counts",
    "a token in both places: the subprotocol one counts; a token subprotocol alone is version 1",
    ["ASP-AUTH-010"],
)
async def subprotocol_token_counts(ctx: CaseContext) -> None:
    valid, garbage = ctx.token(0), "this-is-not-a-valid-token"
    # A valid subprotocol token beside a garbage query token is accepted.
    client, session = await ctx.connect(
        token=garbage,
        token_in="query",
        subprotocols=(SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX + valid),
        requirement="ASP-AUTH-010",
    )
    ctx.check(
        session.get("type") == "session",
        "ASP-AUTH-010",
        "a valid asp.token. subprotocol beside a garbage query token opened a session",
    )
    await client.close()
    # A valid query token beside a garbage subprotocol token: the subprotocol one counts, refused.
    client = await ctx.open(
        token=valid,
        token_in="query",
        subprotocols=(SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX + garbage),
        keepalive=False,
    )
    code = await ctx.closed_with(client)
    ctx.check(
        code == UNAUTHORIZED and client.events == [],
        "ASP-AUTH-010",
        f"a garbage asp.token. subprotocol beside a valid query token: {how_closed(client)} after "
        f"{len(client.events)} event(s), expected {UNAUTHORIZED} and none (the subprotocol token counts)",
    )
    # A token subprotocol offered without any asp.v*: version 1, no subprotocol selected.
    client, session = await ctx.connect(
        token=valid, token_in="subprotocol", subprotocols=(), requirement="ASP-AUTH-010"
    )
    ctx.check(
        client.subprotocol is None,
        "ASP-AUTH-010",
        f"an asp.token. subprotocol offered alone: selected {client.subprotocol!r}, expected none",
    )


@case(
    "auth.bad_claims",
    f"a JWT with nbf in the future, or a sub that is not a string: closed {UNAUTHORIZED}",
    ["ASP-AUTH-012"],
)
async def bad_claims(ctx: CaseContext) -> None:
    subject = ctx.credentials.user_name(ctx.index, 0)
    await _refused(
        ctx,
        ctx.credentials.mint({"sub": subject, "nbf": int(time.time()) + 600}, ttl=1200),
        "ASP-AUTH-012",
        "a token not valid for another 10 minutes (nbf)",
    )
    await _refused(ctx, ctx.credentials.mint({"sub": 12345}), "ASP-AUTH-012", "a token whose sub is a number")
    await _refused(
        ctx, ctx.credentials.mint({"sub": [subject]}), "ASP-AUTH-012", "a token whose sub is a list"
    )


HMAC_ALGORITHMS = ("HS512", "HS384", "HS256")  # the algorithms the kit can sign with the secret


@case(
    "auth.unconfigured_alg",
    f"a JWT signed with the secret under an HMAC algorithm the server is not configured for: closed "
    f"{UNAUTHORIZED}",
    ["ASP-AUTH-012"],
)
async def unconfigured_alg(ctx: CaseContext) -> None:
    configured = ctx.options.jwt_algorithms
    if configured is None:
        raise Unavailable(
            "the alg clause of ASP-AUTH-012 needs the algorithms the server is configured for: "
            "give --jwt-algorithms (for example HS256)"
        )
    algorithm = next((name for name in HMAC_ALGORITHMS if name not in configured), None)
    if algorithm is None:
        raise Unavailable(f"every HMAC algorithm is configured ({', '.join(configured)}): none to send")
    token = ctx.credentials.mint_with(algorithm, {"sub": ctx.credentials.user_name(ctx.index, 0)})
    await _refused(
        ctx,
        token,
        "ASP-AUTH-012",
        f"a token signed with the secret under {algorithm}, configured for {', '.join(configured)} only",
    )
