"""Client frames to commands, or to the error the spec prescribes for them (ASP-ERR-002..006)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from spec.resources import schema_documents
from spec.schemas import check_client_message, client_message_types

_IDENTIFIER = re.compile(schema_documents()["common"]["$defs"]["identifier"]["pattern"])


@dataclass(frozen=True)
class Command:
    """A schema-valid client message."""

    type: str
    data: dict[str, Any]

    @property
    def id(self) -> str | None:
        value = self.data.get("id")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Rejection:
    """A frame answered with an error event; the connection stays open."""

    code: str
    message: str
    message_id: str | None = None


@dataclass(frozen=True)
class TooLarge:
    """A frame over max_message_bytes: the connection closes with 1009 (ASP-LIM-003)."""

    size: int


def message_id_of(data: dict[str, Any]) -> str | None:
    """The client's id when it is a valid identifier (ASP-ERR-006), else None."""
    value = data.get("id")
    return value if isinstance(value, str) and _IDENTIFIER.fullmatch(value) else None


def parse_frame(text: str | None, binary: bytes | None, max_bytes: int) -> Command | Rejection | TooLarge:
    if text is None:
        size = len(binary or b"")
        if size > max_bytes:
            return TooLarge(size)
        return Rejection("unsupported_frame", "Binary frames are not part of ASP; send JSON text frames.")
    raw = text.encode("utf-8")
    if len(raw) > max_bytes:
        return TooLarge(len(raw))
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Rejection("invalid_json", "The frame is not valid JSON.")
    if not isinstance(data, dict):
        return Rejection("invalid_json", "The frame must hold a JSON object.")
    message_id = message_id_of(data)
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in client_message_types():
        return Rejection("unknown_type", f"Unknown message type {str(kind)[:64]!r}.", message_id)
    problems = check_client_message(data)
    if problems:
        return Rejection("invalid_message", f"Invalid {kind}: {problems[0]}"[:512], message_id)
    return Command(kind, data)
