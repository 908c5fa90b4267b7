"""Conversations in a SQL database (SQLite by default, any SQLAlchemy async URL).

Every query that reads or writes a conversation filters by its owner, so authorization is part of
the data access itself and cannot be skipped by a caller.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter
from sqlalchemy import DateTime, String, Text, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(256), index=True)
    messages_json: Mapped[str] = mapped_column(Text, default="[]")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


def _now() -> datetime:
    return datetime.now(UTC)


def new_conversation_id() -> str:
    return "conv_" + secrets.token_hex(12)


class ConversationStore:
    """Owner-scoped access to stored conversations.

    Loads are served from a bounded write-through cache (a database read is half a millisecond on
    the time-to-first-token path). It is exact while this process is the only writer; a deployment
    with several server processes sets `cache_size=0`.
    """

    def __init__(self, url: str, cache_size: int = 10_000) -> None:
        self._url = url
        self.engine: AsyncEngine = create_async_engine(url)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._cache: OrderedDict[str, tuple[str, tuple[ModelMessage, ...]]] = OrderedDict()
        self._cache_size = cache_size

    def _remember(self, conversation_id: str, user_id: str, messages: Sequence[ModelMessage]) -> None:
        if self._cache_size <= 0:
            return
        self._cache[conversation_id] = (user_id, tuple(messages))
        self._cache.move_to_end(conversation_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def start(self) -> None:
        if make_url(self._url).get_backend_name() == "sqlite":
            async with self.engine.begin() as connection:
                await connection.exec_driver_sql("PRAGMA journal_mode=WAL")
        async with self.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)

    async def close(self) -> None:
        await self.engine.dispose()

    async def create(self, user_id: str) -> str:
        conversation_id = new_conversation_id()
        now = _now()
        async with self._sessions.begin() as session:
            session.add(
                Conversation(
                    id=conversation_id, user_id=user_id, messages_json="[]", created_at=now, updated_at=now
                )
            )
        self._remember(conversation_id, user_id, ())
        return conversation_id

    async def owned(self, conversation_id: str, user_id: str) -> bool:
        cached = self._cache.get(conversation_id)
        if cached is not None:
            return cached[0] == user_id
        async with self._sessions() as session:
            found = await session.scalar(
                select(Conversation.id).where(
                    Conversation.id == conversation_id, Conversation.user_id == user_id
                )
            )
        return found is not None

    async def latest(self, user_id: str) -> str | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(Conversation.id)
                .where(Conversation.user_id == user_id)
                .order_by(Conversation.updated_at.desc())
                .limit(1)
            )

    async def load(self, conversation_id: str, user_id: str) -> list[ModelMessage]:
        """The stored pydantic-ai messages of a conversation the user owns (empty otherwise)."""
        cached = self._cache.get(conversation_id)
        if cached is not None:
            return list(cached[1]) if cached[0] == user_id else []
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(Conversation.messages_json).where(
                        Conversation.id == conversation_id, Conversation.user_id == user_id
                    )
                )
            ).first()
        if row is None:
            return []
        messages = list(ModelMessagesTypeAdapter.validate_json(row[0]))
        self._remember(conversation_id, user_id, messages)
        return messages

    async def save(self, conversation_id: str, user_id: str, messages: list[ModelMessage]) -> bool:
        """Replace the conversation's messages; False (nothing written) if the user does not own it."""
        payload = ModelMessagesTypeAdapter.dump_json(messages).decode()
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id, Conversation.user_id == user_id)
                .values(messages_json=payload, updated_at=_now())
            )
        written = bool(getattr(result, "rowcount", 0))
        if written:
            self._remember(conversation_id, user_id, messages)
        return written
