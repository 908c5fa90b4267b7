"""Everything connections share, built once per app: settings, storage, the connection registry,
sessions, the rate limiter, the agent, the runs in progress and the shutdown's grace period."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reference_server import __version__, tracing
from reference_server.agent.factory import build_agent
from reference_server.config import Settings
from reference_server.connections import ConnectionRegistry, InMemoryRegistry
from reference_server.history import entries
from reference_server.logs import get_logger
from reference_server.protocol import connection as core
from reference_server.protocol import events
from reference_server.protocol.effects import Send
from reference_server.protocol.handshake import Binding, binding_of
from reference_server.protocol.sizing import replay_capacity
from reference_server.ratelimit import InMemoryRunRateLimiter, RunRateLimiter
from reference_server.runs import RunContext, RunHandle, StopReason, execute
from reference_server.sessions import DeliveryLimits, Session, SessionStore
from reference_server.storage import ConversationStore, SqlConversationStore
from spec.messages import Limits

if TYPE_CHECKING:
    from reference_server.redis_sessions import Remote, SharedSessions

log = get_logger("hub")


@dataclass(frozen=True)
class Bound:
    """The conversation a new session binds, whether the requested one was refused, and whether it
    was created for this session (then it has no history: its id was never given out)."""

    conversation_id: str
    refused: bool
    created: bool = False


@dataclass
class Hub:
    """Shared state of one server process. Entry points: `bind_conversation`, `open_session`,
    `start_run`, `drain`, `shutdown`."""

    settings: Settings
    registry: ConnectionRegistry[Any] = field(init=False)
    store: ConversationStore = field(init=False)
    sessions: SessionStore = field(init=False)
    limiter: RunRateLimiter = field(init=False)
    runs: RunContext = field(init=False)
    active_runs: dict[str, RunHandle] = field(default_factory=dict)
    grace_ends_at: float | None = None  # monotonic; set when the shutdown begins
    redis: Any = None  # the shared Redis client, when ASP_REDIS_URL is set
    shared: SharedSessions | None = None  # sessions shared through Redis, when ASP_REDIS_URL is set
    _sweeper: asyncio.Task[None] | None = None
    _grace_timer: asyncio.TimerHandle | None = None

    def __post_init__(self) -> None:
        settings = self.settings
        self.sessions = SessionStore(ttl_s=settings.session_ttl_ms / 1000)
        if settings.redis_url:  # several processes act as one server: shared state, checked caches
            from reference_server import redis_state

            self.redis = redis_state.connect(settings.redis_url)
            prefix = settings.redis_prefix
            self.store = SqlConversationStore(
                settings.database_url,
                settings.history_cache_size,
                settings.history_cache_bytes,
                versions=redis_state.RedisHistoryVersions(self.redis, prefix),
            )
            self.registry = redis_state.RedisRegistry(
                self.redis,
                prefix,
                settings.max_connections,
                settings.lease_ttl_ms,
                on_superseded=lambda connection: connection.supersede(),
            )
            self.limiter = redis_state.RedisRunRateLimiter(
                self.redis, prefix, settings.rate_limit_messages, settings.rate_limit_window_ms
            )
            from reference_server.redis_sessions import SharedSessions

            registry = self.registry
            self.shared = SharedSessions(self, self.redis, prefix, registry.instance, registry.alive)
        else:
            self.store = SqlConversationStore(
                settings.database_url, settings.history_cache_size, settings.history_cache_bytes
            )
            self.registry = InMemoryRegistry(settings.max_connections)
            self.limiter = InMemoryRunRateLimiter(settings.rate_limit_messages, settings.rate_limit_window_ms)
        self.runs = RunContext(agent=build_agent(settings), store=self.store, reasoning=settings.reasoning)

    async def start(self) -> None:
        tracing.configure(self.settings.tracing)
        await self.store.start()
        await self.registry.start()
        if self.shared is not None:
            await self.shared.start()
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        interval = max(0.05, min(5.0, self.settings.session_ttl_ms / 4000))
        while True:
            await asyncio.sleep(interval)
            await self.sessions.sweep()
            self.limiter.sweep(time.monotonic())
            if self.shared is not None:
                with contextlib.suppress(Exception):
                    await self.shared.refresh()

    @property
    def capabilities(self) -> list[str]:
        offered = ["history", "cancel", "resume"]
        if self.settings.reasoning:
            offered.append("reasoning")
        if self.settings.fixtures and self.settings.model == "offline":
            offered.append("fixtures")
        return offered

    @property
    def replay_window(self) -> int:
        """Events a session keeps and announces: as many events of max_event_bytes as
        max_replay_bytes holds, at most the replay_window setting (ASP-RES-003, honest)."""
        s = self.settings
        return replay_capacity(s.replay_window, s.max_replay_bytes, s.max_event_bytes)

    @property
    def limits(self) -> Limits:
        """What session.limits announces: each one exactly what the server enforces."""
        s = self.settings
        return {
            "max_message_bytes": s.max_message_bytes,
            "heartbeat_interval_ms": s.heartbeat_interval_ms,
            "idle_timeout_ms": s.idle_timeout_ms,
            "rate_limit": {"messages": s.rate_limit_messages, "window_ms": s.rate_limit_window_ms},
            "replay_window": self.replay_window,
            "session_ttl_ms": s.session_ttl_ms,
            "max_connections": s.max_connections,
            "max_event_bytes": s.max_event_bytes,
        }

    def delivery_limits(self) -> DeliveryLimits:
        s = self.settings
        return DeliveryLimits(
            replay_window=self.replay_window,
            send_timeout_s=s.send_timeout_ms / 1000,
            max_pending_events=s.max_pending_events,
            max_coalesced_chars=s.max_coalesced_chars,
            max_event_bytes=s.max_event_bytes,
            coalesce_s=s.coalesce_ms / 1000,
            max_pending_bytes=s.max_pending_bytes,
        )

    async def bind_conversation(self, user_id: str, requested: str | None) -> Bound:
        """The conversation a new session binds (ASP-SES-006..010)."""
        binding = binding_of(requested)
        if binding is Binding.NAMED and requested is not None and await self.store.bind(requested, user_id):
            return Bound(requested, refused=False)
        if binding is Binding.LATEST:
            latest = await self.store.latest(user_id)  # already the most recently bound one
            if latest is not None:
                return Bound(latest, refused=False)
        refused = binding in (Binding.NAMED, Binding.UNKNOWN)
        return Bound(await self.store.create(user_id), refused=refused, created=True)

    async def open_session(self, user_id: str, conversation_id: str) -> Session:
        session = Session(
            user_id=user_id,
            conversation_id=conversation_id,
            capabilities=self.capabilities,
            limits=self.delivery_limits(),
        )
        self.sessions.add(session)
        if self.shared is not None:
            await self.shared.hold(session)
        return session

    def discard_session(self, session: Session) -> None:
        """A connection's fresh session, replaced by the one it resumed."""
        self.sessions.discard(session.id)
        if self.shared is not None:
            self.shared.release(session)

    async def find_session(self, session_id: str, last_seq: int) -> Session | Remote | None:
        """The session a resume names: this process's, or (shared) one another process holds."""
        local = self.sessions.get(session_id)
        if self.shared is None or (local is not None and self.shared.local(local)):
            return local
        return await self.shared.find(session_id, last_seq)

    def session_event(self, session: Session) -> events.Event:
        return events.session(
            session_id=session.id,
            conversation_id=session.conversation_id,
            user_id=session.user_id,
            limits=self.limits,
            capabilities=session.capabilities,
            version=__version__,
        )

    async def history_event(self, session: Session, created: bool = False) -> events.Event | None:
        """The conversation's history, or None when it has none (ASP-SES-005). `created`: the
        conversation was created for this session, so nothing can have been stored in it yet (no
        client knows its id): no read. With shared state the store has no cache, and this read was
        most of a connect's CPU (two queries, bench: connects/s)."""
        if created:
            return None
        shown = entries(await self.store.load(session.conversation_id, session.user_id))
        return events.history(session.conversation_id, shown) if shown else None

    def start_run(self, session: Session, run_id: str, message_id: str, prompt: str) -> RunHandle:
        """Start the run the core admitted; it ends through `core.on_run_end` (error, complete)."""
        handle = RunHandle(run_id=run_id, message_id=message_id, prompt=prompt)
        self.active_runs[run_id] = handle
        if self.shared is not None:
            self.shared.run_started(session, run_id, message_id, prompt)
        handle.task = asyncio.create_task(self._run(session, handle), name=run_id)
        return handle

    async def _run(self, session: Session, handle: RunHandle) -> None:
        try:
            with tracing.span("asp.run", user=session.user_id, session=session.id, run=handle.run_id):
                outcome = await execute(session, handle, self.runs)
        except asyncio.CancelledError:
            outcome = core.RunOutcome("error", "shutting_down")
            self._end_run(session, handle, outcome)
            raise
        self._end_run(session, handle, outcome)

    def _end_run(self, session: Session, handle: RunHandle, outcome: core.RunOutcome) -> None:
        self.active_runs.pop(handle.run_id, None)
        for effect in core.on_run_end(session.state, handle.run_id, outcome, time.monotonic()):
            if isinstance(effect, Send):
                session.emit(effect.event)
        session.notify()
        if self.shared is not None:
            self.shared.after_run(session)

    def cancel_run(self, run_id: str, session: Session | None = None) -> None:
        """Stop the run (ASP-CAN-001): here, or (shared) on the process that runs it."""
        handle = self.active_runs.get(run_id)
        if handle is not None:
            handle.stop(StopReason.CANCEL)
        elif self.shared is not None and session is not None:
            self.shared.cancel(session, run_id)

    def drain(self) -> None:
        """The shutdown began: runs get the grace period, then are cut (ASP-CLS-005). Idempotent."""
        if self.grace_ends_at is not None:
            return
        grace_s = self.settings.shutdown_grace_ms / 1000
        self.grace_ends_at = time.monotonic() + grace_s
        if self.active_runs:
            log.info("waiting up to %.1f s for %d active run(s)", grace_s, len(self.active_runs))
        self._grace_timer = asyncio.get_running_loop().call_later(grace_s, self._grace_over)

    def _grace_over(self) -> None:
        for handle in list(self.active_runs.values()):
            handle.stop(StopReason.SHUTDOWN)

    async def shutdown(self) -> None:
        """After the connections closed: wait for the runs (the grace period cuts them), then close."""
        self.drain()
        if self._sweeper:
            self._sweeper.cancel()
        tasks = [h.task for h in self.active_runs.values() if h.task is not None]
        if tasks:
            remaining = max(0.0, (self.grace_ends_at or 0) - time.monotonic())
            _, pending = await asyncio.wait(tasks, timeout=remaining + self.settings.send_timeout_ms / 1000)
            for task in pending:  # a run that ignored its stop: cancel it (it still stores what it has)
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.shared is not None:
            await self.shared.close()
        await self.sessions.close_all()
        await self.registry.close()
        await self.store.close()
        if self.redis is not None:
            await self.redis.aclose()
