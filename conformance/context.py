"""What a case works with: connections judged by the oracle, findings, credentials, the server's terms.

Every wait a case makes goes through its `CaseContext`, which sizes it (from the server's terms and
the check's options), names what is awaited and the requirement that promises it, and grows the
case's own budget by it: a case's cap is derived from the waits inside it, so only the kit's own
stalls can exhaust it (a harness error, never a verdict on the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from conformance.credentials import Credentials, Unavailable
from conformance.gating import applies
from conformance.options import CheckOptions
from conformance.outcomes import Finding
from conformance.pacing import RatePacer
from conformance.registry import Case
from conformance.terms import ServerTerms
from conformance.wire import AspClient, Closed, Event, HandshakeBroken, HandshakeRefused, closure
from spec import SUBPROTOCOL, jsondepth
from spec.registry import close_code
from spec.resources import schema_documents
from spec.schemas import is_identifier, server_event_types

T = TypeVar("T")
DEFAULT = object()

CARRIAGE_REQUIREMENT = {"query": "ASP-AUTH-001", "subprotocol": "ASP-AUTH-002"}
UNAUTHORIZED = close_code("unauthorized")
SUPERSEDED = close_code("superseded")
TRY_AGAIN_LATER = close_code("try_again_later")
SLOW_CONSUMER = close_code("slow_consumer")

# The kit's own time between two waits (building frames, judging): the slack of a case's budget.
KIT_SLACK_S = 10.0
# How long a server may take to answer a frame, before --timeout-multiplier.
ANSWER_S = 10.0
# The longest quiet time inside a real model's answer (a message that is not a fixture).
MODEL_ANSWER_S = 45.0
FIXTURE_PREFIX = "asp-fixture:"


class CaseAbort(Exception):
    """A finding made going on pointless; the case ends with what it found."""


class Precondition(Exception):
    """The scenario's premise did not hold (e.g. the run ended before the kit's probe reached the
    server): no evidence either way. The runner retries the case with longer runs, then reports it
    untestable with this reason; never a failure."""


@dataclass
class CaseContext:
    """One run of one case: its connections, findings and budget.

    `stretch` (1 on the first attempt, more on a retry after a `Precondition`) scales the
    durations of the runs a case provokes. `deadline` (monotonic seconds) is the case's budget:
    every wait moves it to at least the wait's end plus the kit's slack.
    """

    case: Case
    index: int
    options: CheckOptions
    credentials: Credentials
    terms: ServerTerms
    pacer: RatePacer
    stretch: float = 1.0
    findings: list[Finding] = field(default_factory=list)
    clients: list[AspClient] = field(default_factory=list)
    tokens_used: set[str] = field(default_factory=set)
    deadline: float = 0.0
    waiting_for: str = "the case to start"
    _ids: int = 0

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.scaled(KIT_SLACK_S)

    # --- judging -------------------------------------------------------------------------------

    def check(self, ok: bool, requirement: str, message: str) -> bool:
        """Record a finding; one on a requirement newer than the server's version is not made."""
        if applies(requirement, self.terms.protocol_version):
            self.findings.append(Finding(requirement, bool(ok), message))
        return bool(ok)

    def require(self, ok: bool, requirement: str, message: str) -> None:
        if not self.check(ok, requirement, message):
            raise CaseAbort(message)

    def fail(self, requirement: str, message: str) -> None:
        self.require(False, requirement, message)

    def precondition(self, ok: bool, reason: str) -> None:
        """The scenario's premise; when it did not hold, no verdict (see `Precondition`)."""
        if not ok:
            raise Precondition(reason)

    # --- time and budget ------------------------------------------------------------------------

    def scaled(self, seconds: float) -> float:
        """A wait for the server, scaled by --timeout-multiplier."""
        return seconds * self.options.timeout_multiplier

    def allow(self, seconds: float, what: str) -> None:
        """Grow the case's budget by a wait of `seconds` for `what`, starting now."""
        self.waiting_for = what
        self.deadline = max(self.deadline, time.monotonic() + seconds + self.scaled(KIT_SLACK_S))

    def real_time(self, seconds: float, what: str) -> float:
        """A wait on real time the case needs (an idle timeout, a long run), in seconds.

        Raises:
            Unavailable: longer than --max-wait.
        """
        if seconds > self.options.max_wait_s:
            raise Unavailable(
                f"{what} takes {seconds:.1f}s, longer than --max-wait ({self.options.max_wait_s:g}s); "
                f"--max-wait {math.ceil(seconds)} waits it out"
            )
        return seconds

    async def within(self, awaitable: Awaitable[T], seconds: float, what: str) -> T:
        """Await `awaitable` for at most `seconds` (TimeoutError after), budgeted as a wait for `what`."""
        self.allow(seconds, what)
        return await asyncio.wait_for(awaitable, seconds)

    async def sleep(self, seconds: float, what: str = "a pause") -> None:
        self.allow(seconds, what)
        await asyncio.sleep(seconds)

    def declares(self, capability: str) -> bool:
        return capability in self.terms.capabilities

    @property
    def limits(self) -> dict[str, Any]:
        return self.terms.limits

    def new_id(self, prefix: str = "kit") -> str:
        self._ids += 1
        return f"{prefix}-{self.index}-{self._ids}"

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
        token_in: str | None = None,
        subprotocols: tuple[str, ...] | list[str] = (SUBPROTOCOL,),
        conversation_id: str | None = None,
        requirement: str = "ASP-TRN-002",
        keepalive: bool = True,
    ) -> AspClient:
        """A raw connection (no event awaited), pinged at the announced heartbeat unless
        `keepalive` is false (cases about idleness). A refused handshake is a finding against
        `requirement`. The token goes in the carriage the probe found working unless `token_in`."""
        chosen = self.token(user) if token is DEFAULT else token
        if isinstance(chosen, str):
            self.tokens_used.add(chosen)
        seconds = self.scaled(ANSWER_S)
        self.allow(seconds, "the WebSocket handshake")
        try:
            client = await AspClient.open(
                self.options.url,
                token=chosen,
                token_in=token_in or self.terms.carriage,
                subprotocols=subprotocols,
                conversation_id=conversation_id,
                headers=self.options.headers or None,
                timeout=seconds,
                keepalive=self.terms.keepalive_s if keepalive else None,
            )
        except HandshakeRefused as refused:
            self.fail(requirement, f"the handshake was refused with HTTP {refused.status} instead of 101")
            raise  # unreachable: fail raises
        except HandshakeBroken as broken:
            self.fail("ASP-TRN-002", f"{broken}, not answered with 101")
            raise
        except (OSError, TimeoutError) as exc:
            if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
                # The kit's own limit of open files, never the server's doing.
                raise Unavailable(f"the kit cannot open another socket ({exc}): raise `ulimit -n`") from None
            self.fail(requirement, f"cannot open a connection: {exc}")
            raise
        if token is DEFAULT:
            client.before_send = self._pace(self.credentials.identity(self.index, user))
        self.clients.append(client)
        return client

    def _pace(self, identity: str) -> Callable[[str | bytes], Awaitable[None]]:
        async def pace(frame: str | bytes) -> None:
            if self.pacer.counts(frame):
                await self.pacer.acquire(identity, self.allow)

        return pace

    async def connect(
        self, user: int = 0, *, requirement: str | None = None, **options: Any
    ) -> tuple[AspClient, Event]:
        """An authenticated connection and its session event.

        No session is a finding against `requirement`, or else the most specific requirement the
        close code points to: the kit's own valid token refused (4001) breaks its carriage
        (ASP-AUTH-001 query, ASP-AUTH-002 subprotocol); a new connection superseded (4002) breaks
        ASP-DUP-002; otherwise ASP-SES-001. A 1013 refusal is untestable: others may hold the
        server's connections.
        """
        client = await self.open(user, **options)
        seconds = self.scaled(ANSWER_S)
        self.allow(seconds, "the session event")
        try:
            session = await client.expect("session", seconds)
        except TimeoutError:
            self.fail(requirement or "ASP-SES-001", f"no session event within {seconds:.1f}s")
            raise
        except Closed as closed:
            if closed.code == TRY_AGAIN_LATER and requirement is None:
                raise Unavailable(
                    f"the server is at its connection limit ({TRY_AGAIN_LATER}): others hold its connections"
                ) from None
            own_token = options.get("token", DEFAULT) is DEFAULT
            cited = requirement or (
                CARRIAGE_REQUIREMENT[options.get("token_in") or self.terms.carriage]
                if closed.code == UNAUTHORIZED and own_token
                else "ASP-DUP-002"
                if closed.code == SUPERSEDED
                else "ASP-SES-001"
            )
            self.fail(cited, f"the connection {closure(closed.code, closed.reason)} before the session event")
            raise
        return client, self._usable(session, "the session event")

    async def expect(
        self,
        client: AspClient,
        kind: str | Callable[[Event], bool],
        requirement: str,
        *,
        timeout: float = ANSWER_S,
        what: str | None = None,
    ) -> Event:
        """The next matching event; its absence (timeout or close) is a finding against `requirement`."""
        label = what or (kind if isinstance(kind, str) else "the expected event")
        seconds = self.scaled(timeout)
        self.allow(seconds, label)
        try:
            return self._usable(await client.expect(kind, seconds), label)
        except TimeoutError:
            self.fail(requirement, f"no {label} within {seconds:.1f}s")
        except Closed as closed:
            self.kept_up(closed, label)
            self.fail(requirement, f"the connection {closure(closed.code, closed.reason)} before {label}")
        raise AssertionError("unreachable")

    def kept_up(self, closed: Closed, label: str) -> None:
        """The premise of every scenario: the kit reads what the server sends in time. A close
        with 4004 (slow consumer) says the server found otherwise, which a server may (ASP-LIM-005),
        and the kit cannot prove it wrong (its reader runs always, but a busy machine stalls it):
        no evidence on what the case awaited.

        Raises:
            Precondition: the connection was closed with 4004.
        """
        if closed.code == SLOW_CONSUMER:
            raise Precondition(
                f"the connection {closure(closed.code, closed.reason)} before {label}: the server "
                "judged the kit a slow consumer, which the kit, reading every frame as it arrives, "
                "cannot disprove"
            )

    def _usable(self, event: Event, label: str) -> Event:
        """The awaited event, when a case can go on with it: every member its type's schema requires
        present, `seq` an integer and `run_id` a string. Otherwise the case ends failing ASP-ENV-001
        (the oracle has the detail), instead of the kit breaking on a hostile server's event."""
        problem = envelope_problem(event)
        if problem:
            self.fail("ASP-ENV-001", f"{label}: {problem}")
        return event

    async def send_message(
        self, client: AspClient, content: str, *, message_id: str | None = None, **members: Any
    ) -> str:
        """Send a `message` (paced under the rate limit); returns its id."""
        chosen = message_id or self.new_id("kit-m")
        await client.send({"type": "message", "id": chosen, "content": content, **members})
        return chosen

    async def started(self, client: AspClient, message_id: str) -> Event:
        """The run_started answering message `message_id`; an error answering it instead is a
        finding against ASP-MSG-001 (the kit sent it within the announced limits, with no run
        active)."""
        answer = await self.expect(
            client,
            lambda e: (
                e.get("type") == "run_started"
                or (e.get("type") == "error" and e.get("message_id") == message_id)
            ),
            "ASP-MSG-001",
            what=f"run_started for message {message_id!r}",
        )
        if answer.get("type") == "error":
            self.fail(
                "ASP-MSG-001",
                f"message {message_id!r}, sent with no run active and within the announced rate "
                f"limit, was answered with error {answer.get('code')!r} instead of a run",
            )
        return answer

    async def run(
        self,
        client: AspClient,
        content: str,
        *,
        message_id: str | None = None,
        gap: float | None = None,
        lasts: float = 0.0,
    ) -> list[Event]:
        """Send a message and collect its run, run_started to complete, then read on to a sync
        point so that events after the complete meet the oracle (ASP-RUN-004, ASP-RUN-005).

        `gap` is the longest quiet time between two events of the run (before the multiplier;
        by default ANSWER_S for a fixture, MODEL_ANSWER_S for a real model's answer); `lasts` the
        run's own expected duration in seconds, when the case provoked a slow one.
        """
        gap = gap if gap is not None else ANSWER_S if content.startswith(FIXTURE_PREFIX) else MODEL_ANSWER_S
        sent_id = await self.send_message(client, content, message_id=message_id)
        started = await self.started(client, sent_id)
        events = [started]
        run_id = started["run_id"]
        while events[-1]["type"] != "complete":
            events.append(
                await self.expect(
                    client,
                    lambda e: e.get("run_id") == run_id,
                    "ASP-RUN-004",
                    timeout=gap + lasts,
                    what=f"complete of run {run_id}",
                )
            )
        await self.settle(client)
        return events

    async def completion(
        self,
        client: AspClient,
        run_id: str,
        requirement: str = "ASP-RUN-004",
        *,
        lasts: float = 0.0,
        timeout: float = ANSWER_S,
        what: str = "complete",
    ) -> Event:
        """The complete of run `run_id`, within `timeout` (before the multiplier) plus `lasts`, the
        run's own expected duration in seconds; its absence is a finding against `requirement`."""
        return await self.expect(
            client,
            lambda e: e.get("type") == "complete" and e.get("run_id") == run_id,
            requirement,
            timeout=timeout + lasts / self.options.timeout_multiplier,
            what=f"{what} of run {run_id}",
        )

    async def settle(self, client: AspClient) -> None:
        """Read on until a ping's pong: whatever the server sent before it meets the oracle."""
        if client.close_code is None:
            seconds = self.scaled(5)
            self.allow(seconds, "the pong of a sync ping")
            await client.sync(seconds)

    async def underway(
        self, client: AspClient, requirement: str = "ASP-MSG-001", deltas: int = 3, within: float = 0.3
    ) -> Event:
        """A run just started on `client`: its run_started, then up to `deltas` text deltas or
        `within` seconds (times `stretch`), whichever comes first. A server that holds its text
        back (a missed SHOULD) still gets the kit's next frame while its run is active."""
        started = await self.expect(client, "run_started", requirement)
        seconds = within * self.stretch
        self.allow(seconds, "the first text of the run")
        end = time.monotonic() + seconds
        for _ in range(deltas):
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            try:
                await client.expect(
                    lambda e: e.get("type") == "text_delta" or e.get("type") == "complete", remaining
                )
            except (TimeoutError, Closed):
                break
        return started

    def completed_before(self, client: AspClient, run_id: str, moment: float) -> bool:
        """Whether run `run_id` had completed before the frame the kit sent at `moment` (monotonic)
        could reach the server: its complete reached the kit before `moment` plus a round trip."""
        margin = 2 * (client.round_trip or 0.05) + self.scaled(0.05)
        found = client.arrived(lambda e: e.get("type") == "complete" and e.get("run_id") == run_id)
        return found is not None and found[1] <= moment + margin

    async def reopen_history(self, conversation_id: str, requirement: str, user: int = 0) -> Event:
        """Connect again to a conversation and return the history it is sent."""
        again, _ = await self.connect(user, conversation_id=conversation_id)
        return await self.expect(again, "history", requirement)

    async def stored_history(
        self,
        conversation_id: str,
        requirement: str,
        until: Callable[[Event], bool],
        *,
        within: float = 0.0,
        user: int = 0,
    ) -> Event:
        """The conversation's stored history (an empty one when none is sent), read on fresh
        connections until `until` holds or `within` seconds (a run still finishing) plus the
        answer time have passed; the last one read is returned either way."""
        deadline = time.monotonic() + within + self.scaled(ANSWER_S)
        while True:
            client, _ = await self.connect(user, conversation_id=conversation_id, requirement=requirement)
            await self.settle(client)
            found = client.arrived(lambda e: e.get("type") == "history")
            history: Event = found[0] if found else {"type": "history", "messages": []}
            await client.close()
            remaining = deadline - time.monotonic()
            if until(history) or remaining <= 0:
                return history
            await self.sleep(min(self.scaled(0.25), remaining), "the run to be stored")

    async def closed_with(self, client: AspClient, timeout: float = 5, *, scaled: bool = True) -> int | None:
        """The close code the server sends next within `timeout` seconds (times the multiplier
        unless `scaled` is false), None if it does not close in time."""
        seconds = self.scaled(timeout) if scaled else timeout
        self.allow(seconds, "the server's close")
        try:
            return await client.wait_closed(seconds)
        except TimeoutError:
            return None

    async def alive(self, client: AspClient, requirement: str, ping_id: str = "alive") -> None:
        """Prove the connection still works: a ping gets its pong."""
        try:
            await client.send({"type": "ping", "id": ping_id})
        except Exception as exc:
            self.fail(requirement, f"the connection is gone: {exc}")
        seconds = self.scaled(ANSWER_S)
        self.allow(seconds, f"pong {ping_id!r}")
        try:
            await client.expect(lambda e: e.get("type") == "pong" and e.get("id") == ping_id, seconds)
        except TimeoutError:
            client.unanswered = True
            self.fail(
                requirement, f"no pong {ping_id!r} within {seconds:.1f}s (the connection should answer)"
            )
        except Closed as closed:
            self.kept_up(closed, f"pong {ping_id!r}")
            self.fail(
                requirement, f"the connection {closure(closed.code, closed.reason)} before pong {ping_id!r}"
            )
        self.check(True, requirement, f"pong {ping_id!r} answers the ping")

    def judge_answer(self, error: Event, sent: Event | str | None) -> None:
        """Judge an `error` answering a client frame (not a run's error) by ASP-ERR-012: it carries
        no run_id, and a message_id only when the frame had a valid id, then that id (never one the
        server minted). `sent` is the frame as sent (a dict, its JSON text, or None when it had
        no parsable id)."""
        frame = sent
        if isinstance(sent, str):
            try:
                frame = jsondepth.loads(sent)
            except (ValueError, RecursionError):
                frame = None
        sent_id = frame.get("id") if isinstance(frame, dict) else None
        valid_id = sent_id if is_identifier(sent_id) else None
        code = error.get("code")
        self.check(
            "run_id" not in error,
            "ASP-ERR-012",
            f"error {code!r} answering a client frame names run {error.get('run_id')!r}",
        )
        if "message_id" in error:
            self.check(
                valid_id is not None and error["message_id"] == valid_id,
                "ASP-ERR-012",
                f"error {code!r} carries message_id {error['message_id']!r}; the frame's id was {sent_id!r}",
            )

    async def close_all(self) -> None:
        """Read every open connection on to a sync point (late events meet the oracle), then close."""
        for client in self.clients:
            with contextlib.suppress(Exception):  # best effort: the verdict is already made
                await asyncio.wait_for(self.settle(client), self.scaled(6))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 3)


def how_closed(client: AspClient) -> str:
    """How `client`'s connection ended, as a finding says it: the close code and reason the server
    sent; that no close frame came (1006: the TCP connection ended without the closing handshake,
    the server dropped it or the network did); or that it is still open. With it a reader tells a
    server that closed with the wrong code (a server bug) from a connection that was lost."""
    return closure(client.close_code, client.close_reason)


def turns(history: Event, role: str) -> list[str]:
    """The content of a history event's entries of one role, in order."""
    return [str(m.get("content", "")) for m in history.get("messages", []) if m.get("role") == role]


def assistant_text(history: Event) -> str:
    """Everything the assistant said in a history event, joined."""
    return "".join(turns(history, "assistant"))


def text_of(events: list[Event]) -> str:
    return "".join(e.get("delta", "") for e in events if e.get("type") == "text_delta")


def envelope_problem(event: Event) -> str | None:
    """What makes an event of a known server type unusable to the cases (members they index):
    a member its schema requires missing, `seq` not an integer, `run_id` not a string; None when
    usable (also for types the kit does not know: the oracle judges those)."""
    kind = event.get("type")
    if not isinstance(kind, str) or kind not in server_event_types():
        return None
    missing = [m for m in schema_documents()[kind].get("required", ()) if m not in event]
    if missing:
        return f"{kind} without {', '.join(missing)}"
    seq = event.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        return f"{kind} whose seq is a {type(seq).__name__}, not an integer"
    if "run_id" in event and not isinstance(event["run_id"], str):
        return f"{kind} whose run_id is a {type(event['run_id']).__name__}, not a string"
    return None
