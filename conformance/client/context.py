"""What a client scenario works with: the scripted server, the client process, findings, and the
few moves every scenario makes (greet a connection, play a run, wait for what the client reports)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from conformance.client.options import ClientCheckOptions
from conformance.client.process import ClientProcess, Record
from conformance.client.scenarios import Scenario
from conformance.client.server import Event, KitSession, Peer, ScriptedServer, new_id
from conformance.client.timing import LATE_MS
from conformance.outcomes import Finding
from spec import PROTOCOL_VERSION
from spec.fixtures import fixture_text, text_tokens

TOKENS = text_tokens(8)  # what every scripted run streams: 't0 ' .. 't7 '
TEXT = fixture_text(8)  # ... and so the text of an undisturbed run
ANSWER_S = 5.0  # how long the client gets to act on a command or an event (scaled)
START_S = 20.0  # how long a client process gets to open its first connection (a browser starting)
HEARTBEAT_MS = 1000  # the heartbeat interval scenarios announce unless they test heartbeats
DEFAULT_CAPABILITIES = ("history", "resume", "cancel")


class ScenarioAbort(Exception):
    """A finding made going on pointless; the scenario ends with what it found."""


class ScenarioUntestable(Exception):
    """What the scenario needs from the client did not happen for a reason it does not judge."""


async def next_peer_while_running(
    server: ScriptedServer, client: ClientProcess, timeout: float
) -> Peer | None:
    """The client's next connection attempt within `timeout` seconds, as `server.next_peer`, but
    None as soon as the client process has exited without making one: an exited process connects
    no more, and waiting out the budget would only delay the report."""
    arrival = asyncio.ensure_future(server.next_peer(timeout))
    exit_ = asyncio.ensure_future(client.exited())
    try:
        await asyncio.wait({arrival, exit_}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        exit_.cancel()
    if arrival.done():
        return arrival.result()
    arrival.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await arrival
    # An attempt may have arrived just before the process exited.
    return await server.next_peer(1.0) if server.pending() else None


@dataclass
class ScriptedRun:
    """One run the kit plays: builds its events (numbered when sent)."""

    message_id: str
    conversation_id: str
    run_id: str = field(default_factory=lambda: new_id("run"))

    def started(self) -> Event:
        return {
            "type": "run_started",
            "run_id": self.run_id,
            "message_id": self.message_id,
            "conversation_id": self.conversation_id,
        }

    def delta(self, text: str) -> Event:
        return {"type": "text_delta", "run_id": self.run_id, "delta": text}

    def complete(self, finish_reason: str = "stop") -> Event:
        return {"type": "complete", "run_id": self.run_id, "finish_reason": finish_reason}

    def stored(self, content: str, text: str) -> list[Event]:
        """This run's exchange as history entries (ASP-HIS-008/009): the user turn, then its text."""
        entries: list[Event] = [
            {"role": "user", "content": content, "message_id": self.message_id, "run_id": self.run_id}
        ]
        if text:
            entries.append({"role": "assistant", "content": text, "run_id": self.run_id})
        return entries


@dataclass
class ScenarioContext:
    """One scenario's run: `server` plays the server, `client` is the client under test."""

    scenario: Scenario
    options: ClientCheckOptions
    server: ScriptedServer
    client: ClientProcess
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    # --- judging ---------------------------------------------------------------------------------

    def check(self, ok: bool, requirement: str, message: str) -> bool:
        self.findings.append(Finding(requirement, bool(ok), message))
        return bool(ok)

    def require(self, ok: bool, requirement: str, message: str) -> None:
        if not self.check(ok, requirement, message):
            raise ScenarioAbort(message)

    def fail(self, requirement: str, message: str) -> None:
        self.require(False, requirement, message)

    def premise(self, ok: object, message: str) -> None:
        """A precondition the scenario does not judge: when it does not hold, the scenario is
        untestable (the probe showed the client can do it; here it did not)."""
        if not ok:
            raise ScenarioUntestable(message)

    def note(self, message: str) -> None:
        self.notes.append(message)

    def t(self, seconds: float) -> float:
        """A wait, scaled by --timeout-multiplier."""
        return seconds * self.options.timeout_multiplier

    @property
    def late_ms(self) -> float:
        return LATE_MS * self.options.timeout_multiplier

    # --- connections -----------------------------------------------------------------------------

    async def first_connection(self) -> Peer:
        """The connection the client opens when it starts (its absence: untestable)."""
        return await self.connection(START_S, "connection from the client as it started")

    async def connection(self, within: float, what: str, requirement: str | None = None) -> Peer:
        """The client's next connection attempt within `within` seconds (scaled). Its absence is a
        finding against `requirement`, or leaves the scenario untestable when none is given."""
        peer = await next_peer_while_running(self.server, self.client, self.t(within))
        if peer is None:
            message = f"no {what} within {self.t(within):.1f} s"
            if not self.client.running:
                message = f"no {what}: the client exited (status {self.client.exit_status})"
            if requirement is None:
                raise ScenarioUntestable(message)
            self.fail(requirement, message)
            raise AssertionError("unreachable")
        return peer

    async def greet(
        self,
        peer: Peer,
        *,
        session: KitSession | None = None,
        version: str = PROTOCOL_VERSION,
        capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES,
        heartbeat_ms: int = HEARTBEAT_MS,
        history: list[Event] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> KitSession:
        """Send `session` (and `history` when entries are given) on a new session; returns it.

        The session binds the conversation the client asked for (`conversation_id` in the URL)
        when the kit made it, as a server binds a conversation its user owns (ASP-SES-008).
        """
        if session is None:
            requested = (peer.query.get("conversation_id") or [""])[0]
            known = requested in self.server.conversations
            session = KitSession(conversation_id=requested) if known else KitSession()
        self.server.conversations.add(session.conversation_id)
        peer.session = session
        event: Event = {
            "type": "session",
            "protocol_version": version,
            "session_id": peer.session.session_id,
            "conversation_id": peer.session.conversation_id,
            "user": {"id": "asp-client-check"},
            "limits": {
                "max_message_bytes": 65536,
                "heartbeat_interval_ms": heartbeat_ms,
                "idle_timeout_ms": 600_000,
                "rate_limit": {"messages": 1000, "window_ms": 60_000},
                "replay_window": 1000,
                "session_ttl_ms": 600_000,
                "max_event_bytes": 1_048_576,
            },
            "capabilities": list(capabilities),
            "server": {"name": "asp check-client scripted server"},
            **(extra or {}),
        }
        await peer.send(event)
        if history:
            await peer.send(
                {"type": "history", "conversation_id": peer.session.conversation_id, "messages": history}
            )
        return peer.session

    # --- the user and what the client reports ------------------------------------------------------

    async def user_sends(self, text: str) -> None:
        """The user types `text` (a `send` command on the client's standard input)."""
        await self.client.send({"send": text})

    async def user_message(self, peer: Peer, text: str, requirement: str | None = None) -> Event:
        """Type `text` and return the `message` the client then sends on `peer`. Its absence is a
        finding against `requirement`, or leaves the scenario untestable when none is given."""
        already = len(peer.messages)
        await self.user_sends(text)
        message = await peer.next_message(("message",), self.t(ANSWER_S), after=already)
        if message is None:
            what = f"the client sent no message within {self.t(ANSWER_S):.0f} s of the user typing {text!r}"
            if requirement is None:
                raise ScenarioUntestable(what)
            self.fail(requirement, what)
        assert message is not None
        return message

    def run_for(self, peer: Peer, message: Event) -> ScriptedRun:
        """A run answering `message` (its id becomes the run's message_id, ASP-MSG-002)."""
        assert peer.session is not None
        given = message.get("id")
        return ScriptedRun(
            message_id=given if isinstance(given, str) and given else new_id("msg"),
            conversation_id=peer.session.conversation_id,
        )

    async def play(
        self, peer: Peer, run: ScriptedRun, tokens: list[str] = TOKENS, pace_s: float = 0.01
    ) -> None:
        """run_started, one text_delta per token (`pace_s` apart), complete stop."""
        await peer.send(run.started())
        for token in tokens:
            await peer.send(run.delta(token))
            await asyncio.sleep(pace_s)
        await peer.send(run.complete())

    async def reported_run(self, run_id: str, within: float = ANSWER_S) -> Record | None:
        """The `run` record the client reports for `run_id`, waiting up to `within` s (scaled)."""
        found = await self.client.wait_for(
            lambda r: r.get("event") == "run" and r.get("run_id") == run_id, self.t(within)
        )
        return found.record if found else None

    def runs_reported(self, run_id: str) -> list[Record]:
        return [r for r in self.client.records("run") if r.get("run_id") == run_id]

    async def settle(self, seconds: float) -> None:
        """Let the client act for `seconds` (scaled): what it does meanwhile is judged after."""
        await asyncio.sleep(self.t(seconds))
