"""Client frames in: a valid client message, or the error code that answers it (PROTOCOL.md section 10).

Checks in order: binary frame (`unsupported_frame`, ASP-ERR-003); not a JSON object
(`invalid_json`, ASP-ERR-002); `type` missing or unknown (`unknown_type`, ASP-ERR-005); the
message's schema broken (`invalid_message`, ASP-ERR-004). Validation runs the published
`spec/schema/client-message.json`; invalid UTF-8 never gets here (the websockets library fails
the connection with 1007 first, ASP-TRN-004).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.exceptions import best_match

from spec.resources import schema_documents
from spec.schemas import schema_registry

Message = dict[str, Any]
CLIENT_TYPES = frozenset({"message", "cancel", "ping", "resume"})


@dataclass(frozen=True)
class Refusal:
    """A frame that gets an error instead of being served; `message_id` is its valid `id`, if any."""

    code: str
    detail: str
    message_id: str | None = None


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """JSON Schema's `pattern` is ECMA-262, where `$` matches only at the very end; Python's `re`
    also matches `$` before a final newline, so `"run_1\\n"` would pass. Anchor with `\\Z` instead."""
    if not validator.is_type(instance, "string"):
        return
    python = pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern
    if not re.search(python, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


@cache
def _validator() -> Any:
    return _Validator(schema_documents()["client-message"], registry=schema_registry())


@cache
def _identifier() -> re.Pattern[str]:
    pattern: str = schema_documents()["common"]["$defs"]["identifier"]["pattern"]
    return re.compile(pattern.removeprefix("^").removesuffix("$"))


def valid_id(value: Any) -> str | None:
    """`value` when it is a valid client message `id` (common.json identifier), else None."""
    return value if isinstance(value, str) and _identifier().fullmatch(value) else None


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
    problem = best_match(_validator().iter_errors(message))
    if problem is not None:
        where = "/".join(str(part) for part in problem.absolute_path) or "the message"
        return Refusal("invalid_message", f"{kind}: {where} is not valid", message_id)
    return message
