"""Everything connections share, built once per app: settings, storage, registry, sessions, agent."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from reference_server import __version__, tracing
from reference_server.agent.factory import build_agent
from reference_server.config import Settings
from reference_server.connections import ConnectionRegistry, InMemoryRegistry
from reference_server.logs import get_logger
from reference_server.protocol import events
from reference_server.ratelimit import MessageRateLimiter
from reference_server.runs import RunContext
from reference_server.sessions import DeliveryLimits, Session, SessionStore, Sink
from reference_server.storage import ConversationStore
from spec.messages import Limits

log = get_logger("hub")
NEW_CONVERSATION = "new"


@dataclass
class Peer:
    """One live connection: its user, its sink and the session it currently carries."""

    user_id: str
    sink: Sink
    session: Session
    sent_message: bool = False


@dataclass
class Hub:
    settings: Settings
    store: ConversationStore = field(init=False)
    registry: ConnectionRegistry[Peer] = field(init=False)
    sessions: SessionStore = field(init=False)
    limiter: MessageRateLimiter = field(init=False)
    runs: RunContext = field(init=False)
    run_tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _sweeper: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        settings = self.settings
        self.store = ConversationStore(settings.database_url, settings.history_cache_size)
        self.registry = InMemoryRegistry(settings.max_connections)
        self.sessions = SessionStore(ttl_s=settings.session_ttl_ms / 1000)
        self.limiter = MessageRateLimiter(settings.rate_limit_messages, settings.rate_limit_window_ms)
        self.runs = RunContext(agent=build_agent(settings), store=self.store, reasoning=settings.reasoning)

    async def start(self) -> None:
        tracing.configure(self.settings.tracing)
        await self.store.start()
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        interval = max(0.05, min(5.0, self.settings.session_ttl_ms / 4000))
        while True:
            await asyncio.sleep(interval)
            await self.sessions.sweep()

    @property
    def capabilities(self) -> list[str]:
        offered = ["history", "cancel", "resume"]
        if self.settings.reasoning:
            offered.append("reasoning")
        if self.settings.fixtures and self.settings.model == "offline":
            offered.append("fixtures")
        return offered

    @property
    def limits(self) -> Limits:
        s = self.settings
        return {
            "max_message_bytes": s.max_message_bytes,
            "heartbeat_interval_ms": s.heartbeat_interval_ms,
            "idle_timeout_ms": s.idle_timeout_ms,
            "rate_limit": {"messages": s.rate_limit_messages, "window_ms": s.rate_limit_window_ms},
            "replay_window": s.replay_window,
            "session_ttl_ms": s.session_ttl_ms,
            "max_connections": s.max_connections,
        }

    def delivery_limits(self) -> DeliveryLimits:
        s = self.settings
        return DeliveryLimits(
            replay_window=s.replay_window,
            send_timeout_s=s.send_timeout_ms / 1000,
            max_pending_events=s.max_pending_events,
            max_coalesced_chars=s.max_coalesced_chars,
            coalesce_s=s.coalesce_ms / 1000,
        )

    async def bind_conversation(self, user_id: str, requested: str | None) -> tuple[str, bool]:
        """The conversation a new session binds (ASP-SES-006); True when the requested one was refused."""
        if requested == NEW_CONVERSATION:
            return await self.store.create(user_id), False
        if requested:
            if await self.store.owned(requested, user_id):
                return requested, False
            return await self.store.create(user_id), True
        latest = await self.store.latest(user_id)
        return (latest, False) if latest else (await self.store.create(user_id), False)

    def open_session(self, user_id: str, conversation_id: str) -> Session:
        session = Session(
            user_id=user_id,
            conversation_id=conversation_id,
            capabilities=self.capabilities,
            limits=self.delivery_limits(),
        )
        self.sessions.add(session)
        return session

    def session_event(self, session: Session) -> dict[str, Any]:
        return events.session(
            session_id=session.id,
            conversation_id=session.conversation_id,
            user_id=session.user_id,
            limits=self.limits,
            capabilities=session.capabilities,
            version=__version__,
        )

    def track(self, task: asyncio.Task[None]) -> None:
        self.run_tasks.add(task)
        task.add_done_callback(self.run_tasks.discard)

    async def shutdown(self) -> None:
        """Let active runs finish within the grace period, cancel the rest (they store what they have)."""
        if self._sweeper:
            self._sweeper.cancel()
        pending = set(self.run_tasks)
        if pending:
            log.info("waiting for %d active run(s) to finish", len(pending))
            _, pending = await asyncio.wait(pending, timeout=self.settings.shutdown_grace_ms / 1000)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.sessions.close_all()
        await self.store.close()
