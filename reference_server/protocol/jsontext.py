"""JSON text of client frames, read without ever raising and without recursion.

orjson reads every frame first (fast, strict RFC 8259). It refuses some text that is still JSON
by RFC 8259's grammar: nesting more than 1024 deep, a number beyond a double (`1e999999`, an
integer of 400 digits), a string with a lone surrogate escape (`"\\ud800"`). For those frames alone
an iterative reader takes over, which checks the grammar itself: a scalar orjson cannot represent
becomes an `OutOfRange` value (the inbound layer answers `invalid_message`, the value being out of
range for any schema, not `invalid_json`). Both paths return the *top level* of the value:
containers nested inside a top-level member are returned empty (a list stays a list, an object an
object), because no client message schema looks deeper than a member's type, and a value nested
5,000 deep must not reach the schema validator or an error message (ASP-ERR-004: a bad frame is
answered, never a crash).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

_TOKEN = re.compile(
    r"""[ \t\n\r]*(?:
      (?P<punct>[\[\]{}:,])
    | (?P<string>"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*")
    | (?P<scalar>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null)
    )""",
    re.VERBOSE,
)
_TRAILING_SPACE = re.compile(r"[ \t\n\r]*")
_SURROGATE = re.compile("[\ud800-\udfff]")


class NotJson(Exception):
    """The text is not one JSON value (RFC 8259's grammar)."""


@dataclass(frozen=True)
class OutOfRange:
    """A JSON scalar (RFC 8259 grammar) that has no value here: a number beyond a double or a
    string with a lone surrogate escape. `token` is its text, at most 64 characters."""

    token: str


def loads_top_level(raw: bytes) -> Any:
    """The JSON value of `raw` with containers below the top-level members emptied, and a scalar
    that cannot be represented at the top level or as a top-level member given as `OutOfRange`.

    Raises NotJson when `raw` is not JSON; never anything else, whatever the depth or size.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as undecodable:
            raise NotJson("not UTF-8") from undecodable
        return _read_deep(text)  # the grammar decides; only frames orjson refused pay for it
    return prune(value)


def prune(value: Any) -> Any:
    """`value` with every container inside a top-level member replaced by an empty one."""
    if isinstance(value, dict):
        return {key: _emptied(member) for key, member in value.items()}
    if isinstance(value, list):
        return [_emptied(member) for member in value]
    return value


def _emptied(value: Any) -> Any:
    if isinstance(value, dict):
        return {}
    if isinstance(value, list):
        return []
    return value


def _scalar(token: str) -> Any:
    """The value of a scalar token the grammar accepted; OutOfRange when orjson refuses it."""
    try:
        return orjson.loads(token)
    except orjson.JSONDecodeError:
        return OutOfRange(token[:64])


def _key(token: str) -> str:
    """A member name; a lone surrogate in it becomes U+FFFD (it names no schema member)."""
    name: str = json.loads(token)
    return _SURROGATE.sub("\ufffd", name)


# States of the iterative reader.
_VALUE, _VALUE_OR_CLOSE, _KEY, _KEY_OR_CLOSE, _COLON, _AFTER_VALUE = range(6)


def _read_deep(text: str) -> Any:
    """An iterative JSON reader: an explicit stack instead of recursion, any depth.

    The stack holds one entry per open container; only the root and its direct members are
    built (members as empty containers), deeper values are checked and dropped.
    """
    stack: list[tuple[bool, Any]] = []  # (is_object, container or None when dropped)
    keys: list[str | None] = []
    root: Any = None
    have_root = False
    state = _VALUE
    position = 0
    length = len(text)

    def attach(value: Any) -> None:
        nonlocal root, have_root
        if not stack:
            root, have_root = value, True
            return
        is_object, container = stack[-1]
        if container is None:
            return
        if is_object:
            container[keys[-1]] = value
        else:
            container.append(value)

    while True:
        match = _TOKEN.match(text, position)
        if match is None or (match.end() == position and position < length):
            if have_root and not stack and _TRAILING_SPACE.fullmatch(text, position):
                return root
            raise NotJson(f"unexpected character at {position}")
        position = match.end()
        punct, string, scalar = match.group("punct", "string", "scalar")
        if punct is None and string is None and scalar is None:
            raise NotJson(f"unexpected character at {position}")
        if state in (_VALUE, _VALUE_OR_CLOSE):
            if punct == "]" and state == _VALUE_OR_CLOSE:
                state = _close(stack, keys, attach)
            elif punct in ("[", "{"):
                if have_root and not stack:
                    raise NotJson("more than one value")
                depth = len(stack)
                container: Any = ({} if punct == "{" else []) if depth <= 1 else None
                if depth == 1:
                    attach(container)  # a top-level member: kept, emptied
                    container = None
                stack.append((punct == "{", container))
                keys.append(None)
                state = _KEY_OR_CLOSE if punct == "{" else _VALUE_OR_CLOSE
            elif string is not None or scalar is not None:
                if have_root and not stack:
                    raise NotJson("more than one value")
                attach(_scalar(string if string is not None else scalar))
                state = _AFTER_VALUE
            else:
                raise NotJson(f"unexpected {punct!r} at {position}")
        elif state in (_KEY, _KEY_OR_CLOSE):
            if punct == "}" and state == _KEY_OR_CLOSE:
                state = _close(stack, keys, attach)
            elif string is not None:
                keys[-1] = _key(string)
                state = _COLON
            else:
                raise NotJson(f"expected a member name at {position}")
        elif state == _COLON:
            if punct != ":":
                raise NotJson(f"expected ':' at {position}")
            state = _VALUE
        else:  # _AFTER_VALUE
            if not stack:
                raise NotJson("more than one value")
            is_object = stack[-1][0]
            if punct == ",":
                state = _KEY if is_object else _VALUE
            elif punct == ("}" if is_object else "]"):
                state = _close(stack, keys, attach)
            else:
                raise NotJson(f"expected ',' or a closing bracket at {position}")
        if position >= length:
            if have_root and not stack:
                return root
            raise NotJson("unexpected end")


def _close(stack: list[tuple[bool, Any]], keys: list[str | None], attach: Any) -> int:
    _, container = stack.pop()
    keys.pop()
    if not stack:
        attach(container)
    return _AFTER_VALUE
