"""Transport and versioning: subprotocol negotiation and refusals by close code."""

from __future__ import annotations

from conformance.context import CaseContext, how_closed
from conformance.registry import case
from spec.registry import close_code

UNSUPPORTED = close_code("unsupported_version")


@case(
    "handshake.version_selected",
    "asp.v1 offered is selected; the first event is session",
    ["ASP-VER-001", "ASP-TRN-002", "ASP-VER-004", "ASP-SES-001", "ASP-SES-002"],
)
async def version_selected(ctx: CaseContext) -> None:
    client, session = await ctx.connect()
    ctx.check(client.subprotocol == "asp.v1", "ASP-VER-001", f"selected subprotocol {client.subprotocol!r}")
    ctx.check(
        str(session.get("protocol_version", "")).startswith("1."), "ASP-VER-004", "protocol_version is 1.x"
    )
    ctx.check(session.get("seq") == 1, "ASP-SES-001", "session has seq 1")
    ctx.check(
        bool(session.get("limits")) and isinstance(session.get("capabilities"), list),
        "ASP-SES-002",
        "session announces limits and capabilities",
    )


@case(
    "handshake.no_version_offered",
    "a client that offers no subprotocol is served version 1",
    ["ASP-VER-002", "ASP-SES-001"],
)
async def no_version_offered(ctx: CaseContext) -> None:
    client, _ = await ctx.connect(subprotocols=())
    ctx.check(client.subprotocol is None, "ASP-VER-002", "no subprotocol selected when none was offered")


@case(
    "handshake.unsupported_version",
    f"only unknown versions offered: accepted with the first of them selected, then closed {UNSUPPORTED}",
    ["ASP-VER-003", "ASP-TRN-002", "ASP-VER-006", "ASP-TRN-005"],
)
async def unsupported_version(ctx: CaseContext) -> None:
    client = await ctx.open(subprotocols=("asp.v99", "asp.v98"), keepalive=False)
    ctx.check(
        client.subprotocol in (None, "asp.v99", "asp.v98"),
        "ASP-VER-002",
        f"selected {client.subprotocol!r}, which was not offered",
    )
    ctx.check(
        client.subprotocol == "asp.v99",
        "ASP-VER-006",
        f"refusing the version, the server selected {client.subprotocol!r}, not the first asp.v* offered "
        "('asp.v99'): a browser fails the handshake and never sees the close code",
    )
    code = await ctx.closed_with(client)
    ctx.check(code == UNSUPPORTED, "ASP-VER-003", f"{how_closed(client)}, expected {UNSUPPORTED}")
    ctx.check(client.events == [], "ASP-VER-003", f"{len(client.events)} event(s) before the close")
    # Refused for two reasons, version and authentication: the version check comes first.
    client = await ctx.open(token=None, subprotocols=("asp.v99",), keepalive=False)
    code = await ctx.closed_with(client)
    ctx.check(
        code == UNSUPPORTED and client.events == [],
        "ASP-TRN-005",
        f"an unsupported version without a token: {how_closed(client)} after {len(client.events)} "
        f"event(s), expected {UNSUPPORTED} (the version is checked before authentication)",
    )


@case(
    "handshake.token_subprotocol_never_selected",
    "the asp.token. subprotocol authenticates and is never selected",
    ["ASP-AUTH-002", "ASP-VER-002"],
)
async def token_subprotocol(ctx: CaseContext) -> None:
    client, session = await ctx.connect(token_in="subprotocol", requirement="ASP-AUTH-002")
    ctx.check(client.subprotocol == "asp.v1", "ASP-VER-002", f"selected {client.subprotocol!r}")
    ctx.check(session.get("type") == "session", "ASP-AUTH-002", "the subprotocol token authenticated")
