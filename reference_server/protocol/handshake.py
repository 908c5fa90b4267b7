"""Handshake decisions: version, credentials, conversation binding. No I/O.

Refusal precedence (ASP-TRN-005): a handshake refused for several reasons gets the code of the
first failing check in the order version (4000), authentication (4001), capacity (1013). `decide`
makes the first two checks in that order; only a connection it lets through reaches the
connection registry, so unauthenticated connections never take a slot (ASP-LIM-008).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from reference_server.auth import AuthError
from reference_server.protocol.connection import CloseReason, close
from reference_server.protocol.effects import Close
from reference_server.protocol.inbound import is_identifier
from spec import SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX

VERSION_PREFIX = "asp.v"
NEW_CONVERSATION = "new"


@dataclass(frozen=True)
class HandshakeDecision:
    """What to select in the 101 and whether to close right after it (with no event)."""

    subprotocol: str | None
    refusal: Close | None
    user_id: str | None = None
    why: str = ""  # for the log, never the token


def select_subprotocol(offered: Sequence[str]) -> tuple[str | None, bool]:
    """(subprotocol to select, whether the version is spoken).

    No `asp.v*` offered means version 1 and nothing selected (ASP-VER-002); `asp.v1` offered is
    selected (ASP-VER-001); only other versions: the first `asp.v*` offered is selected so that a
    browser completes the handshake and sees the 4000 (ASP-VER-006).
    """
    versions = [p for p in offered if p.startswith(VERSION_PREFIX)]
    if not versions:
        return None, True
    if SUBPROTOCOL in versions:
        return SUBPROTOCOL, True
    return versions[0], False


def token_of(query: Mapping[str, str], subprotocols: Iterable[str], headers: Mapping[str, str]) -> str | None:
    """The token that counts: the `asp.token.` subprotocol, else the `token` query parameter
    (ignored when a subprotocol token is offered, ASP-AUTH-010), else a Bearer header."""
    for offered in subprotocols:
        if offered.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return offered[len(TOKEN_SUBPROTOCOL_PREFIX) :]
    if query.get("token"):
        return query["token"]
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def decide(
    offered: Sequence[str],
    query: Mapping[str, str],
    headers: Mapping[str, str],
    verify: Callable[[str | None], str],
) -> HandshakeDecision:
    """Version first, then the token (`verify` returns the user id or raises AuthError)."""
    subprotocol, spoken = select_subprotocol(offered)
    if not spoken:
        return HandshakeDecision(
            subprotocol, close(CloseReason.UNSUPPORTED_VERSION, "unsupported protocol version")
        )
    try:
        user_id = verify(token_of(query, offered, headers))
    except AuthError as refused:
        return HandshakeDecision(
            subprotocol, close(CloseReason.UNAUTHORIZED, "unauthorized"), why=str(refused)
        )
    return HandshakeDecision(subprotocol, None, user_id)


class Binding(enum.Enum):
    NEW = "new"  # conversation_id=new: a new empty conversation (ASP-SES-007)
    LATEST = "latest"  # no conversation_id: the one the user's last session was bound to (ASP-SES-009)
    NAMED = "named"  # an identifier: that conversation if the user owns it (ASP-SES-008)
    UNKNOWN = "unknown"  # empty or malformed: a new one and conversation_not_found (ASP-SES-010)


def binding_of(requested: str | None) -> Binding:
    """How the conversation_id query parameter binds the session (only the exact value `new` is new)."""
    if requested is None:
        return Binding.LATEST
    if requested == NEW_CONVERSATION:
        return Binding.NEW
    if is_identifier(requested):
        return Binding.NAMED
    return Binding.UNKNOWN
