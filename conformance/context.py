"""What a case works with: connections judged by the oracle, findings, credentials, the server's terms."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from conformance.credentials import Credentials
from conformance.options import CheckOptions
from conformance.outcomes import Finding
from conformance.registry import Case
from conformance.wire import AspClient, Closed, Event, HandshakeRefused
from spec import SUBPROTOCOL

DEFAULT = object()


class CaseAbort(Exception):
    """A finding made going on pointless; the case ends with what it found."""


@dataclass
class ServerTerms:
    """What the server announced in its session event."""

    session: Event
    limits: dict[str, Any]
    capabilities: frozenset[str]
    user_id: str

    @classmethod
    def from_session(cls, session: Event) -> ServerTerms:
        return cls(
            session,
            dict(session.get("limits", {})),
            frozenset(session.get("capabilities", [])),
            str(session.get("user", {}).get("id", "")),
        )


@dataclass
class CaseContext:
    case: Case
    index: int
    options: CheckOptions
    credentials: Credentials
    terms: ServerTerms
    findings: list[Finding] = field(default_factory=list)
    clients: list[AspClient] = field(default_factory=list)
    tokens_used: set[str] = field(default_factory=set)

    # --- judging -------------------------------------------------------------------------------

    def check(self, ok: bool, requirement: str, message: str) -> bool:
        self.findings.append(Finding(requirement, bool(ok), message))
        return bool(ok)

    def require(self, ok: bool, requirement: str, message: str) -> None:
        if not self.check(ok, requirement, message):
            raise CaseAbort(message)

    def fail(self, requirement: str, message: str) -> None:
        self.require(False, requirement, message)

    # --- time and terms ------------------------------------------------------------------------

    def t(self, seconds: float) -> float:
        return seconds * self.options.timeout_multiplier

    def declares(self, capability: str) -> bool:
        return capability in self.terms.capabilities

    @property
    def limits(self) -> dict[str, Any]:
        return self.terms.limits

    # --- connections ---------------------------------------------------------------------------

    def token(self, user: int = 0) -> str:
        token = self.credentials.token(self.index, user)
        self.tokens_used.add(token)
        return token

    async def open(
        self,
        user: int = 0,
        *,
        token: Any = DEFAULT,
        token_in: str = "query",
        subprotocols: tuple[str, ...] | list[str] = (SUBPROTOCOL,),
        conversation_id: str | None = None,
        requirement: str = "ASP-TRN-002",
    ) -> AspClient:
        """A raw connection (no event awaited). A refused handshake is a finding against `requirement`."""
        chosen = self.token(user) if token is DEFAULT else token
        if isinstance(chosen, str):
            self.tokens_used.add(chosen)
        try:
            client = await AspClient.open(
                self.options.url,
                token=chosen,
                token_in=token_in,
                subprotocols=subprotocols,
                conversation_id=conversation_id,
                headers=self.options.headers or None,
                timeout=self.t(10),
            )
        except HandshakeRefused as refused:
            self.fail(requirement, f"the handshake was refused with HTTP {refused.status} instead of 101")
            raise  # unreachable: fail raises
        except (OSError, TimeoutError) as exc:
            self.fail(requirement, f"cannot open a connection: {exc}")
            raise
        self.clients.append(client)
        return client

    async def connect(self, user: int = 0, **options: Any) -> tuple[AspClient, Event]:
        """An authenticated connection and its session event."""
        client = await self.open(user, **options)
        session = await self.expect(client, "session", "ASP-SES-001", timeout=10)
        return client, session

    async def expect(
        self,
        client: AspClient,
        kind: str | Callable[[Event], bool],
        requirement: str,
        *,
        timeout: float = 10,
        what: str | None = None,
    ) -> Event:
        """The next matching event; its absence (timeout or close) is a finding against `requirement`."""
        label = what or (kind if isinstance(kind, str) else "the expected event")
        try:
            return await client.expect(kind, self.t(timeout))
        except TimeoutError:
            self.fail(requirement, f"no {label} within {self.t(timeout):.1f}s")
        except Closed as closed:
            self.fail(requirement, f"the server closed ({closed.code} {closed.reason!r}) before {label}")
        raise AssertionError("unreachable")

    async def run(
        self, client: AspClient, content: str, *, message_id: str | None = None, timeout: float = 15
    ) -> list[Event]:
        """Send a message and collect its run, run_started to complete."""
        message: Event = {"type": "message", "content": content}
        if message_id:
            message["id"] = message_id
        await client.send(message)
        started = await self.expect(client, "run_started", "ASP-MSG-001", timeout=timeout)
        events = [started]
        while events[-1]["type"] != "complete":
            events.append(
                await self.expect(
                    client,
                    lambda e: e.get("run_id") == started["run_id"],
                    "ASP-RUN-004",
                    timeout=timeout,
                    what=f"complete of run {started['run_id']}",
                )
            )
        return events

    async def reopen_history(self, conversation_id: str, requirement: str, user: int = 0) -> Event:
        """Connect again to a conversation and return the history it is sent."""
        again, _ = await self.connect(user, conversation_id=conversation_id)
        return await self.expect(again, "history", requirement)

    async def closed_with(self, client: AspClient, timeout: float = 5) -> int | None:
        """The close code the server sends next (None if it does not close in time)."""
        try:
            return await client.wait_closed(self.t(timeout))
        except TimeoutError:
            return None

    async def alive(self, client: AspClient, requirement: str, ping_id: str = "alive") -> None:
        """Prove the connection still works: a ping gets its pong."""
        try:
            await client.send({"type": "ping", "id": ping_id})
        except Exception as exc:
            self.fail(requirement, f"the connection is gone: {exc}")
        pong = await self.expect(
            client,
            lambda e: e.get("type") == "pong" and e.get("id") == ping_id,
            requirement,
            what=f"pong {ping_id!r} (the connection should have stayed open)",
        )
        self.check(pong.get("id") == ping_id, requirement, "pong answers the ping")

    async def close_all(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):  # closing is best effort; the verdict is already made
                await asyncio.wait_for(client.close(), 3)


def turns(history: Event, role: str) -> list[str]:
    """The content of a history event's entries of one role, in order."""
    return [str(m.get("content", "")) for m in history.get("messages", []) if m.get("role") == role]


def assistant_text(history: Event) -> str:
    """Everything the assistant said in a history event, joined."""
    return "".join(turns(history, "assistant"))


def text_of(events: list[Event]) -> str:
    return "".join(e.get("delta", "") for e in events if e.get("type") == "text_delta")
