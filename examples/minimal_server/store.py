"""Conversations in SQLite (stdlib `sqlite3`): they survive a restart (ASP-HIS-007).

Three tables: `conversations` (id, owner), `entries` (a conversation's history entries in stored
order, each the JSON object `history` sends) and `last_bound` (per user, the conversation their
most recent session was bound to, ASP-SES-009).

Calls are synchronous and short (one local file, WAL journal); the server makes them from its
event loop between awaits, so a run's exchange is stored before its `complete` is emitted.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

Entry = dict[str, Any]
NEW = "new"  # the only conversation_id value that asks for a new conversation (ASP-SES-007)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, owner TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    position INTEGER NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (conversation_id, position)
);
CREATE TABLE IF NOT EXISTS last_bound (owner TEXT PRIMARY KEY, conversation_id TEXT NOT NULL);
"""


class Store:
    """One SQLite database file; `close()` when done."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)  # autocommit; transactions explicit
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def bind(self, owner: str, requested: str | None) -> tuple[str, bool]:
        """The conversation a new session of `owner` is bound to, and whether `requested` was unknown.

        No `conversation_id`: the last one bound, or a new one (ASP-SES-009). `new`: a new empty
        conversation (ASP-SES-007). An id `owner` owns: that one (ASP-SES-008). Anything else
        (unknown, another user's, empty, malformed): a new one, reported unknown (ASP-SES-006,
        ASP-SES-010). The answer is remembered as `owner`'s last bound conversation.
        """
        unknown = False
        if requested is None:
            chosen = self._last_bound(owner) or self._create(owner)
        elif requested != NEW and self._owns(owner, requested):
            chosen = requested
        else:
            unknown = requested != NEW
            chosen = self._create(owner)
        self.remember(owner, chosen)
        return chosen, unknown

    def remember(self, owner: str, conversation_id: str) -> None:
        """Record `conversation_id` as the one `owner`'s most recent session is bound to."""
        self._db.execute(
            "INSERT INTO last_bound (owner, conversation_id) VALUES (?, ?) "
            "ON CONFLICT (owner) DO UPDATE SET conversation_id = excluded.conversation_id",
            (owner, conversation_id),
        )

    def entries(self, conversation_id: str) -> list[Entry]:
        """The conversation's history entries in stored order (ASP-HIS-002, ASP-HIS-008)."""
        rows = self._db.execute(
            "SELECT entry FROM entries WHERE conversation_id = ? ORDER BY position", (conversation_id,)
        )
        return [json.loads(entry) for (entry,) in rows]

    def user_messages(self, conversation_id: str) -> list[str]:
        """The contents of the conversation's user entries, oldest first."""
        return [str(e["content"]) for e in self.entries(conversation_id) if e.get("role") == "user"]

    def append(self, conversation_id: str, exchange: list[Entry]) -> None:
        """Store one exchange (the user entry and the run's output) at the end, all or nothing."""
        with self._transaction():
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM entries WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
            self._db.executemany(
                "INSERT INTO entries (conversation_id, position, entry) VALUES (?, ?, ?)",
                [(conversation_id, count + n, json.dumps(e)) for n, e in enumerate(exchange)],
            )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _owns(self, owner: str, conversation_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM conversations WHERE id = ? AND owner = ?", (conversation_id, owner)
        ).fetchone()
        return row is not None

    def _last_bound(self, owner: str) -> str | None:
        row = self._db.execute("SELECT conversation_id FROM last_bound WHERE owner = ?", (owner,)).fetchone()
        return str(row[0]) if row else None

    def _create(self, owner: str) -> str:
        conversation_id = "conv_" + secrets.token_hex(16)
        self._db.execute("INSERT INTO conversations (id, owner) VALUES (?, ?)", (conversation_id, owner))
        return conversation_id
