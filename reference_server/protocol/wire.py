"""The wire form of server events: one total encoder, so no value can silence a session.

Events are encoded with orjson (the hot path). Values orjson cannot write take a slower path
with one fixed wire form each:

- integers beyond 64 bits: exact JSON numbers (JSON has no size limit; clients that read
  numbers as doubles round them, as they would any large number), up to MAX_INT_DIGITS digits
  (Python's limit for decimal text); longer ones: null;
- NaN and +/-Infinity: null (JSON has no such numbers; orjson writes null too);
- strings holding lone surrogates: the surrogates are replaced with U+FFFD;
- values JSON has no type for (bytes, sets, dates, objects): their str();
- nesting deeper than MAX_DEPTH: a container there becomes the string TOO_DEEP.

`encode` never raises for a dict of such values; `json_safe` gives the same normal form as Python
values, for code that keeps or measures them (tool results, history entries).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

MAX_DEPTH = 128
MAX_INT_DIGITS = 4000
MAX_INT_BITS = int(MAX_INT_DIGITS * 3.32)  # 10**4000 < 2**13280
MAX_DEPTH_TEXT = 1024
TOO_DEEP = "(nested too deep)"


def encode(event: dict[str, Any]) -> str:
    """The event's JSON text (UTF-8 when encoded), in the wire form above."""
    try:
        return orjson.dumps(event).decode()
    except TypeError:  # orjson.JSONEncodeError: a big int, a surrogate, an unknown type, or depth
        return json.dumps(json_safe(event), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encoded_size(value: Any) -> int:
    """Bytes of `value`'s UTF-8 JSON text in the wire form."""
    try:
        return len(orjson.dumps(value))
    except TypeError:
        return len(json.dumps(json_safe(value), ensure_ascii=False, separators=(",", ":")).encode())


def json_safe(value: Any, depth: int = 0) -> Any:
    """`value` as plain JSON data in the wire form (see the module docstring)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= MAX_INT_BITS else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _valid_unicode(value)
    if depth >= MAX_DEPTH:
        return (
            TOO_DEEP
            if isinstance(value, dict | list | tuple)
            else _valid_unicode(str(value)[:MAX_DEPTH_TEXT])
        )
    if isinstance(value, dict):
        return {_valid_unicode(str(key)): json_safe(member, depth + 1) for key, member in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(member, depth + 1) for member in value]
    return _valid_unicode(str(value))


def _valid_unicode(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text
