"""Authentication: every bad token class is accepted at HTTP level, gets no event, closes 4001."""

from __future__ import annotations

from conformance.context import CaseContext
from conformance.registry import case
from spec.registry import close_code

UNAUTHORIZED = close_code("unauthorized")


async def _refused(ctx: CaseContext, token: str | None, requirement: str, label: str) -> None:
    client = await ctx.open(token=token, requirement="ASP-TRN-002", keepalive=False)
    code = await ctx.closed_with(client)
    ctx.check(code == UNAUTHORIZED, requirement, f"{label}: closed with {code}, expected {UNAUTHORIZED}")
    ctx.check(
        client.events == [], requirement, f"{label}: {len(client.events)} event(s) sent before the close"
    )


@case("auth.query_token", "a valid token in the token query parameter authenticates", ["ASP-AUTH-001"])
async def query_token(ctx: CaseContext) -> None:
    _, session = await ctx.connect(token_in="query", requirement="ASP-AUTH-001")
    ctx.check(session.get("type") == "session", "ASP-AUTH-001", "session after a query-parameter token")


@case("auth.missing_token", "no token: accepted, no event, closed 4001", ["ASP-AUTH-003", "ASP-TRN-002"])
async def missing_token(ctx: CaseContext) -> None:
    await _refused(ctx, None, "ASP-AUTH-003", "no token")


@case("auth.garbage_token", "a malformed token: accepted, no event, closed 4001", ["ASP-AUTH-003"])
async def garbage_token(ctx: CaseContext) -> None:
    await _refused(ctx, "this-is-not-a-valid-token", "ASP-AUTH-003", "malformed token")


@case("auth.forged_token", "a JWT signed with the wrong secret: closed 4001", ["ASP-AUTH-003"])
async def forged_token(ctx: CaseContext) -> None:
    await _refused(
        ctx, ctx.credentials.forged(ctx.terms.user_id or "asp-kit"), "ASP-AUTH-003", "forged token"
    )


@case("auth.alg_none", "a JWT with alg none: closed 4001", ["ASP-AUTH-005"])
async def alg_none(ctx: CaseContext) -> None:
    await _refused(ctx, ctx.credentials.unsigned(ctx.terms.user_id or "asp-kit"), "ASP-AUTH-005", "alg none")


@case("auth.expired_token", "an expired token: closed 4001", ["ASP-AUTH-006"], needs=("jwt_secret",))
async def expired_token(ctx: CaseContext) -> None:
    token = ctx.credentials.mint({"sub": ctx.credentials.user_name(ctx.index, 0)}, ttl=-60)
    await _refused(ctx, token, "ASP-AUTH-006", "expired token")


@case("auth.no_subject", "a token naming no user: closed 4001", ["ASP-AUTH-004"], needs=("jwt_secret",))
async def no_subject(ctx: CaseContext) -> None:
    await _refused(ctx, ctx.credentials.mint({}), "ASP-AUTH-004", "token without sub")
    await _refused(ctx, ctx.credentials.mint({"sub": ""}), "ASP-AUTH-004", "token with an empty sub")
