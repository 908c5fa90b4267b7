"""The scripted model: what the agent answers to a message, as a list of steps.

An ordinary message is echoed back word by word. With the `fixtures` capability, a message that
is exactly one of the registry's fixture forms gets the behaviour the registry gives it
(ASP-CAP-004, spec/registry.yaml `fixtures`); a message that looks like a fixture but is not one
of these forms (bad numbers, out of range) is an ordinary message. Only `recall` depends on the
conversation's earlier turns.

`runs.py` plays the steps: `Say` streams tokens, `CallTool` runs a tool of `tools.py`, `Fail` is
a model failure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

FIXTURE_PREFIX = "asp-fixture:"
MAX_TOKENS = 100_000
MAX_MS = 60_000
MAX_BULK_SIZE = 65_536


@dataclass(frozen=True)
class Say:
    """Stream `tokens` as text: the first at once, then one every `pace_ms` (None: as fast as possible)."""

    tokens: Iterable[str]
    pace_ms: int | None


@dataclass(frozen=True)
class CallTool:
    """Call the tool `name` with `arguments` and wait for its result."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Fail:
    """The model provider fails: the run ends with `model_error`."""


Step = Say | CallTool | Fail


def words(text: str) -> list[str]:
    """`text` as tokens: each word with the spaces after it."""
    return re.findall(r"\S+\s*|\s+", text)


def text_tokens(count: int) -> Iterator[str]:
    """'t0 ', 't1 ', ... 't(count-1) '."""
    return (f"t{number} " for number in range(count))


def _numbers(args: list[str], highs: list[int | None]) -> list[int] | None:
    """`args` as decimal integers (ASCII digits), one per entry of `highs`, each within [0, high]
    (None: no upper bound); else None."""
    if len(args) != len(highs) or not all(re.fullmatch(r"[0-9]+", arg) for arg in args):
        return None
    values = [int(arg) for arg in args]
    fits = all(high is None or v <= high for v, high in zip(values, highs, strict=True))
    return values if fits else None


def fixture(content: str, earlier_user_messages: list[str], pace_ms: int) -> list[Step] | None:
    """The steps of a registry fixture, or None when `content` is not exactly one."""
    if not content.startswith(FIXTURE_PREFIX):
        return None
    name, _, rest = content[len(FIXTURE_PREFIX) :].partition(" ")
    args = rest.split(" ") if rest else []
    if name == "text" and (n := _numbers(args, [MAX_TOKENS])):
        return [Say(text_tokens(n[0]), pace_ms)]
    if name == "slow" and (n := _numbers(args, [MAX_TOKENS, MAX_MS])):
        return [Say(text_tokens(n[0]), n[1])]
    if name == "bulk" and (n := _numbers(args, [None, MAX_BULK_SIZE])) and n[0] >= 1 and n[1] >= 1:
        count, size = n
        return [Say(("b" * (size - 1) + " " for _ in range(count)), None)]
    if name == "slow_tool" and (n := _numbers(args, [MAX_MS])):
        return [CallTool("sleep", {"ms": n[0]}), Say(["Done."], pace_ms)]
    if args:
        return None
    if name == "tool":
        return [CallTool("add", {"a": 2, "b": 3}), Say(words("The sum is 5."), pace_ms)]
    if name == "tool_error":
        return [CallTool("fail", {}), Say(words("The tool failed."), pace_ms)]
    if name == "model_error":
        return [Say(["t0 "], pace_ms), Fail()]
    if name == "recall":
        return [Say(["recall:" + "|".join(earlier_user_messages)], pace_ms)]
    return None


def answer(content: str, earlier_user_messages: list[str], *, fixtures: bool, pace_ms: int) -> list[Step]:
    """The steps that answer `content`: a fixture's when fixtures are on and it is one, else an echo."""
    if fixtures:
        steps = fixture(content, earlier_user_messages, pace_ms)
        if steps is not None:
            return steps
    return [Say(words("You said: " + content), pace_ms)]
