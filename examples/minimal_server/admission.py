"""Who is let in: refusal precedence, the connection limit and one connection per user.

A handshake refused for several reasons gets the code of the first failing check: version
(4000), then authentication (4001), then capacity (1013) (ASP-TRN-005). Refused connections
never hold a slot (ASP-LIM-008).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from examples.minimal_server import codes
from examples.minimal_server.handshake import Offer

Connection = TypeVar("Connection")


@dataclass(frozen=True)
class Refused:
    """Close the accepted WebSocket at once with `code`, sending no event (ASP-TRN-002)."""

    code: int
    reason: str


def check_version_and_user(offer: Offer, user: str | None) -> Refused | None:
    """The first two checks of ASP-TRN-005: version (ASP-VER-003), then token (ASP-AUTH-003)."""
    if not offer.version_supported:
        return Refused(codes.UNSUPPORTED_VERSION, "no offered version is spoken here")
    if user is None:
        return Refused(codes.UNAUTHORIZED, "missing or invalid token")
    return None


class Slots(Generic[Connection]):
    """The live authenticated connections, at most one per user and at most `limit` in all.

    `admit` is synchronous, so concurrent handshakes on one event loop can never overshoot:
    never more than `limit` at once, and every connection within the limit is admitted
    (ASP-LIM-002, ASP-LIM-008).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._live: dict[str, Connection] = {}

    def __len__(self) -> int:
        return len(self._live)

    def admit(self, user: str, connection: Connection) -> Refused | Connection | None:
        """Take a slot for `user`'s new `connection`.

        Returns the user's older connection, which the caller closes with 4002 (ASP-DUP-001): the
        new one takes its slot, even at the limit (ASP-LIM-007). Returns None when there was
        none, or `Refused` (1013) when the limit is reached (ASP-LIM-001).
        """
        older = self._live.get(user)
        if older is None and len(self._live) >= self.limit:
            return Refused(codes.TRY_AGAIN_LATER, "over the connection limit")
        self._live[user] = connection
        return older

    def release(self, user: str, connection: Connection) -> None:
        """Give back `connection`'s slot, unless a newer connection of the user took it."""
        if self._live.get(user) is connection:
            del self._live[user]

    def connections(self) -> list[Connection]:
        return list(self._live.values())
