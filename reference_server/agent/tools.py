"""Real tools the agent can call: demo tools for people, fixture tools for the conformance kit.

A tool that fails raises ModelRetry, which pydantic-ai turns into a failed tool result the model
sees, so the run goes on (ASP-TOOL-004).
"""

from __future__ import annotations

import ast
import asyncio
import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic_ai import ModelRetry

_OPERATORS: dict[type, Any] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
MAX_EXPRESSION = 200
MAX_RESULT_BITS = 4096  # integers stay exact up to here (2**64 and far beyond)


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 100:
            raise ValueError("exponent too large")
        result: float = _OPERATORS[type(node.op)](left, right)
        return _bounded(result)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        unary: float = _OPERATORS[type(node.op)](_evaluate(node.operand))
        return _bounded(unary)
    raise ValueError("only numbers and + - * / // % ** ( ) are allowed")


def _bounded(value: float) -> float:
    if isinstance(value, int) and value.bit_length() > MAX_RESULT_BITS:
        raise ValueError("result too large")
    return value


def calculator(expression: str) -> float | int:
    """Evaluate an arithmetic expression such as '2 + 3 * 4'."""
    if len(expression) > MAX_EXPRESSION:
        raise ModelRetry("expression too long")
    try:
        value = _evaluate(ast.parse(expression, mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError) as exc:
        raise ModelRetry(f"cannot evaluate {expression!r}: {exc}") from exc
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value  # integers stay exact; inf and nan go out as the wire form says (null)


def clock() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def add(a: int | float, b: int | float) -> int | float:
    """Fixture: add two numbers (integers stay integers: the fixture's result is the JSON number 5)."""
    return a + b


def fail() -> str:
    """Fixture: a tool that always fails."""
    raise ModelRetry("the fixture tool 'fail' failed on purpose")


async def sleep(ms: int) -> dict[str, int]:
    """Fixture: take `ms` milliseconds, then return {"slept_ms": ms}."""
    await asyncio.sleep(max(0, min(ms, 60_000)) / 1000)
    return {"slept_ms": ms}


DEMO_TOOLS: tuple[Callable[..., Any], ...] = (calculator, clock)
FIXTURE_TOOLS: tuple[Callable[..., Any], ...] = (add, fail, sleep)  # only when fixtures are enabled
