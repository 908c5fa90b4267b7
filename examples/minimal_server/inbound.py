"""Client frames in: a valid client message, or the error code that answers it (PROTOCOL.md section 10).

Checks in order: binary frame (`unsupported_frame`, ASP-ERR-003); not a JSON object
(`invalid_json`, ASP-ERR-002); `type` missing or unknown (`unknown_type`, ASP-ERR-005); the
message's schema broken (`invalid_message`, ASP-ERR-004). Validation runs the published
`spec/schema/client-message.json` through spec/schemas.py, which applies `pattern` in JSON
Schema's own dialect, ECMA-262 (in Python's `re`, `$` also matches before a final newline, so
`"id": "m1\n"` would pass). Invalid UTF-8 never gets here: the websockets library fails the
connection with 1007 first (ASP-TRN-004).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from jsonschema.exceptions import best_match

from spec.resources import schema_documents
from spec.schemas import ecma_search, validator

Message = dict[str, Any]
CLIENT_TYPES = frozenset({"message", "cancel", "ping", "resume"})


@dataclass(frozen=True)
class Refusal:
    """A frame that gets an error instead of being served; `message_id` is its valid `id`, if any."""

    code: str
    detail: str
    message_id: str | None = None


@cache
def _identifier() -> str:
    pattern: str = schema_documents()["common"]["$defs"]["identifier"]["pattern"]
    return pattern


def valid_id(value: Any) -> str | None:
    """`value` when it is a valid client message `id` (common.json `identifier`), else None."""
    return value if isinstance(value, str) and ecma_search(_identifier(), value) else None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read(frame: str | bytes) -> Message | Refusal:
    """The client message in `frame`, or the refusal to send back. Never raises."""
    if isinstance(frame, bytes):
        return Refusal("unsupported_frame", "ASP uses text frames only")
    try:
        message = json.loads(frame, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return Refusal("invalid_json", "the frame is not JSON")
    if not isinstance(message, dict):
        return Refusal("invalid_json", "the frame is not a JSON object")
    message_id = valid_id(message.get("id"))
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in CLIENT_TYPES:
        return Refusal("unknown_type", "type is missing or not a client message type", message_id)
    problem = best_match(validator("client-message").iter_errors(message))
    if problem is not None:
        where = "/".join(str(part) for part in problem.absolute_path) or "the message"
        return Refusal("invalid_message", f"{kind}: {where} is not valid", message_id)
    return message
