"""Client frames to commands, or to the error the spec prescribes for them (ASP-ERR-002..006).

`parse_frame` is total: for any text or bytes it returns a Command, a Rejection or a TooLarge and
never raises, whatever the frame's depth, size, encoding or shape (a bad frame is answered and the
connection stays, ASP-ERR-004). Invalid UTF-8 never reaches it: the WebSocket layer fails such a
connection with 1007 (ASP-TRN-004).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from reference_server.protocol.jsontext import NotJson, OutOfRange, loads_top_level
from spec.compiled import compiled
from spec.messages import ErrorCode
from spec.resources import schema_documents
from spec.schemas import check_client_message, client_message_types

_IDENTIFIER = re.compile(schema_documents()["common"]["$defs"]["identifier"]["pattern"])
MAX_ERROR_MESSAGE = 512


@dataclass(frozen=True)
class Command:
    """A schema-valid client message (its containers below the top level emptied, see jsontext)."""

    type: str
    data: dict[str, Any]

    @property
    def id(self) -> str | None:
        """The client's id: schema-valid, so a valid identifier, or None when absent."""
        value = self.data.get("id")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Rejection:
    """A frame answered with an error event; the connection stays open."""

    code: ErrorCode
    message: str
    message_id: str | None = None


@dataclass(frozen=True)
class TooLarge:
    """A message over max_message_bytes: the connection closes with 1009 (ASP-LIM-003, ASP-LIM-010)."""

    size: int


Parsed = Command | Rejection | TooLarge


def is_identifier(value: object) -> bool:
    return isinstance(value, str) and _IDENTIFIER.fullmatch(value) is not None


def message_id_of(data: dict[str, Any]) -> str | None:
    """The client's id when it is a valid identifier (ASP-ERR-006, ASP-ERR-012), else None."""
    value = data.get("id")
    return value if is_identifier(value) else None


def payload_size(text: str | None, binary: bytes | None) -> int:
    """Bytes of a (reassembled) message's payload: UTF-8 bytes for text (ASP-LIM-010)."""
    if text is None:
        return len(binary or b"")
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def parse_frame(text: str | None, binary: bytes | None, max_bytes: int) -> Parsed:
    """One client message: text (already valid UTF-8) or binary, fragments reassembled.

    Returns TooLarge beyond `max_bytes` (exactly `max_bytes` is accepted), a Rejection with the
    registry's error code for binary (unsupported_frame), non-JSON or non-object (invalid_json),
    unknown or missing type (unknown_type) and schema violations (invalid_message, also for a
    member JSON allows but no value fits: a number beyond a double, a lone surrogate), each with the
    client's id only when it is a valid identifier; otherwise the Command.
    """
    size = payload_size(text, binary)
    if size > max_bytes:
        return TooLarge(size)
    if text is None:
        return Rejection("unsupported_frame", "Binary frames are not part of ASP; send JSON text frames.")
    try:
        data = loads_top_level(text.encode("utf-8", "surrogatepass"))
    except NotJson:
        return Rejection("invalid_json", "The frame is not valid JSON.")
    if not isinstance(data, dict):
        return Rejection("invalid_json", "The frame must hold a JSON object.")
    message_id = message_id_of(data)
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in client_message_types():
        what = f"Unknown message type {kind[:64]!r}." if isinstance(kind, str) else "The message has no type."
        return Rejection("unknown_type", what, message_id)
    out_of_range = [key for key, value in data.items() if isinstance(value, OutOfRange)]
    if out_of_range:  # valid JSON (RFC 8259), but no value this or any schema accepts
        key = out_of_range[0][:64]
        return Rejection("invalid_message", f"Invalid {kind}: {key!r} is out of range.", message_id)
    fast = compiled(kind)  # True only when the schema holds; else jsonschema decides and explains
    if fast is None or not fast(data):
        problems = check_client_message(data)
        if problems:
            return Rejection(
                "invalid_message", f"Invalid {kind}: {problems[0]}"[:MAX_ERROR_MESSAGE], message_id
            )
    return Command(kind, data)
