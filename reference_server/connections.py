"""Which connections are live: the connection limit and one connection per user.

A slot belongs to a user's live connection, so the number of slots in use is the number of users
with a live connection. `admit` is one atomic step (in memory it has no await, so no other
connection runs between its check and its update; a registry shared by several processes, Redis
or a database, implements the same interface with one atomic script or transaction):

- the user has a live connection: the new one supersedes it and takes its slot, even at the
  limit (ASP-LIM-007); the old one is returned, to be closed with 4002 (ASP-DUP-001);
- otherwise, below the limit: a new slot; at the limit: refused (1013, ASP-LIM-001).

Refused handshakes never get here, so they hold no slot, and a slot is free again as soon as its
connection is released: N concurrent connects against a limit of N admit exactly N (ASP-LIM-002,
ASP-LIM-008).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

C = TypeVar("C")


@dataclass(frozen=True)
class Admitted(Generic[C]):
    superseded: C | None  # the user's previous live connection, whose slot this one took


AT_CAPACITY = None


class ConnectionRegistry(Protocol[C]):
    async def start(self) -> None:
        """Before the first admit (a shared registry connects and takes its lease)."""
        ...

    async def close(self) -> None:
        """After the last release (a shared registry gives its slots back at once)."""
        ...

    async def admit(self, user_id: str, connection: C) -> Admitted[C] | None:
        """Make `connection` the user's live one; None when the server is at capacity."""
        ...

    async def release(self, user_id: str, connection: C) -> None:
        """The connection ended: its slot is free, unless a newer connection of the user took it."""
        ...

    @property
    def active(self) -> int:
        """Slots in use."""
        ...


class InMemoryRegistry(ConnectionRegistry[C]):
    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._by_user: dict[str, C] = {}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def admit(self, user_id: str, connection: C) -> Admitted[C] | None:
        previous = self._by_user.get(user_id)
        if previous is None and len(self._by_user) >= self.max_connections:
            return AT_CAPACITY
        self._by_user[user_id] = connection
        return Admitted(previous if previous is not connection else None)

    async def release(self, user_id: str, connection: C) -> None:
        if self._by_user.get(user_id) is connection:
            del self._by_user[user_id]

    @property
    def active(self) -> int:
        return len(self._by_user)
