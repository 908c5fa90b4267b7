"""The upgrade request: which path, which version, which token, which conversation.

Pure functions over what the client sent; `server.py` plugs them into the websockets library's
`process_request` and `select_subprotocol` hooks, `admission.py` turns them into a verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from examples.minimal_server.codes import SUBPROTOCOL, TOKEN_PREFIX, VERSION_PREFIX


@dataclass(frozen=True)
class Offer:
    """What one upgrade request asks for.

    `conversation_id` is the raw query value (None when absent, "" when empty); `token` is the
    bearer token that counts: the `asp.token.` subprotocol's when one is offered, else the
    `token` query parameter's (ASP-AUTH-010).
    """

    path: str
    subprotocols: tuple[str, ...]
    token: str | None
    conversation_id: str | None

    @classmethod
    def read(cls, target: str, subprotocols: Sequence[str]) -> Offer:
        """Parse a request target (`/ws/chat?token=...`) and the offered subprotocols, in order."""
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        carried = [p.removeprefix(TOKEN_PREFIX) for p in subprotocols if p.startswith(TOKEN_PREFIX)]
        token = carried[0] if carried else _first(query, "token")
        return cls(
            path=parts.path,
            subprotocols=tuple(subprotocols),
            token=token or None,
            conversation_id=_first(query, "conversation_id"),
        )

    @property
    def versions(self) -> list[str]:
        """The `asp.v*` subprotocols offered, in the client's order (a token is not a version)."""
        return [p for p in self.subprotocols if p.startswith(VERSION_PREFIX)]

    @property
    def version_supported(self) -> bool:
        """No `asp.v*` offered means version 1 (PROTOCOL.md section 2); else asp.v1 must be among them."""
        return not self.versions or SUBPROTOCOL in self.versions


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def select_subprotocol(offer: Offer) -> str | None:
    """The subprotocol to put in the 101 response.

    asp.v1 when offered (ASP-VER-001). When only unknown versions are offered, the first of them,
    so a browser completes the handshake and sees the 4000 that follows (ASP-VER-006). Nothing
    when no version is offered; never an `asp.token.` subprotocol (ASP-VER-002).
    """
    if SUBPROTOCOL in offer.versions:
        return SUBPROTOCOL
    return offer.versions[0] if offer.versions else None


def offered_subprotocols(header_values: Sequence[str]) -> list[str]:
    """The `Sec-WebSocket-Protocol` header values split into subprotocols, in order."""
    return [item.strip() for value in header_values for item in value.split(",") if item.strip()]
