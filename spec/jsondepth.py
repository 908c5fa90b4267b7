"""JSON parsing that refuses deep nesting before the parser recurses into it.

Python's `json` parser recurses once per nesting level and raises `RecursionError` around 1,000
levels. Raising it from that deep in C leaves CPython 3.11's recursion bookkeeping off by the
depth it unwound (gh-106905), and the next `ast.parse` in the process (pytest's assertion
rewriting of a module imported later, for one) then fails with "AST constructor recursion depth
mismatch". So nesting is measured first, without recursion, and refused at `MAX_DEPTH`.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 400  # far below the interpreter's recursion limit, far above any ASP message
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)  # strings (skipped) and brackets


class NestedTooDeep(RecursionError):
    """The JSON nests deeper than `MAX_DEPTH`; raised before any parser recursed into it. A
    `RecursionError`, so code that treats a parser's recursion limit as "too deep" handles it."""


def nesting_depth(text: str, stop_at: int = MAX_DEPTH) -> int:
    """The deepest bracket nesting of `text` outside strings, counted up to `stop_at` (then returned)."""
    if text.count("[") + text.count("{") < stop_at:  # cannot reach it: no scan
        return 0
    depth = deepest = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest >= stop_at:
                return deepest
        elif token in "]}":
            depth -= 1
    return deepest


def loads(text: str | bytes, **options: Any) -> Any:
    """`json.loads(text, **options)`, refusing nesting of `MAX_DEPTH` levels or more.

    Raises:
        NestedTooDeep: nested `MAX_DEPTH` levels or deeper (no parser recursion happened).
        ValueError: not JSON (`json.JSONDecodeError`), as `json.loads` raises it.
    """
    decoded = text.decode("utf-8", "surrogatepass") if isinstance(text, bytes) else text
    if nesting_depth(decoded) >= MAX_DEPTH:
        raise NestedTooDeep(f"JSON nested {MAX_DEPTH} levels or deeper")
    return json.loads(decoded, **options)
