"""The tools the scripted model can call (fixtures `tool`, `tool_error`, `slow_tool`).

A tool takes its arguments and returns any JSON value, or raises `ToolFailed`: the run then
sends `tool_result` with `is_error` true and goes on (ASP-TOOL-004).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


class ToolFailed(Exception):
    """The tool failed; the message is sent to the client as the tool's result content."""


async def add(a: int, b: int) -> int:
    return a + b


async def fail() -> Any:
    raise ToolFailed("the tool failed")


async def sleep(ms: int) -> dict[str, int]:
    await asyncio.sleep(ms / 1000)
    return {"slept_ms": ms}


TOOLS: dict[str, Callable[..., Awaitable[Any]]] = {"add": add, "fail": fail, "sleep": sleep}
