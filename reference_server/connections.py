"""Which connections are live: the connection limit and one connection per user.

Both operations are synchronous, so under asyncio no other connection can run between the check
and the update: N concurrent connects against a limit of N admit exactly N. A registry shared by
several processes (Redis, a database) implements the same interface with atomic operations.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

C = TypeVar("C")


class ConnectionRegistry(Protocol[C]):
    def try_reserve(self) -> bool:
        """Take one connection slot; False when the limit is reached."""

    def release(self) -> None:
        """Give back a slot taken by try_reserve."""

    def register(self, user_id: str, connection: C) -> C | None:
        """Make `connection` the user's live one; returns the one it supersedes, if any."""

    def unregister(self, user_id: str, connection: C) -> None:
        """Forget `connection` if it is still the user's live one."""

    @property
    def active(self) -> int:
        """Slots in use."""


class InMemoryRegistry(ConnectionRegistry[C]):
    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._slots = 0
        self._by_user: dict[str, C] = {}

    def try_reserve(self) -> bool:
        if self._slots >= self.max_connections:
            return False
        self._slots += 1
        return True

    def release(self) -> None:
        self._slots = max(0, self._slots - 1)

    def register(self, user_id: str, connection: C) -> C | None:
        previous = self._by_user.get(user_id)
        self._by_user[user_id] = connection
        return previous if previous is not connection else None

    def unregister(self, user_id: str, connection: C) -> None:
        if self._by_user.get(user_id) is connection:
            del self._by_user[user_id]

    @property
    def active(self) -> int:
        return self._slots
