"""The offline deterministic model: streams token by token, calls tools when asked, no API key.

Plans are pure functions of the conversation so far, so tests and the conformance kit can predict
every event. Fixture prompts (registry.yaml) are honoured only when fixtures are enabled.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pydantic_ai.messages import ModelMessage, ModelRequest, RetryPromptPart, ToolReturnPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCalls, FunctionModel

from reference_server.history import tool_failed, user_prompts
from spec.fixtures import text_tokens


class OfflineModelFailure(Exception):
    """The model_error fixture: the 'provider' fails mid-stream."""


@dataclass(frozen=True)
class ToolRequest:
    name: str
    arguments: dict[str, object]


@dataclass(frozen=True)
class Plan:
    """What the model does next: stream these tokens, then call a tool or stop (or fail)."""

    tokens: list[str] = field(default_factory=list)
    tool: ToolRequest | None = None
    delay_s: float | None = None
    fail_after_tokens: bool = False


_CALCULATION = re.compile(r"(?:calculate|compute|what is|what's)\s+([-+*/%().\d\s]+\d[-+*/%().\d\s]*)", re.I)
_TIME = re.compile(r"\b(time|clock|date)\b", re.I)
_FIXTURE = re.compile(r"asp-fixture:(\w+)(?: (\d+))?(?: (\d+))?")


def words(text: str) -> list[str]:
    """Split text into tokens that keep their trailing space, so the deltas rebuild it exactly."""
    return re.findall(r"\S+\s*|\s+", text)


def plan_for_prompt(prompt: str, earlier_prompts: list[str], fixtures: bool) -> Plan:
    if fixtures:
        match = _FIXTURE.fullmatch(prompt.strip())
        if match:
            return _fixture_plan(match.group(1), match.group(2), match.group(3), earlier_prompts)
    calculation = _CALCULATION.search(prompt)
    if calculation:
        return Plan(
            words("Let me calculate that. "),
            ToolRequest("calculator", {"expression": calculation.group(1).strip()}),
        )
    if _TIME.search(prompt):
        return Plan(words("Let me check the clock. "), ToolRequest("clock", {}))
    turn = len(earlier_prompts) + 1
    reply = f"You said: {prompt.strip()} (turn {turn} of this conversation"
    reply += f"; before this you said: {earlier_prompts[-1].strip()})." if earlier_prompts else ")."
    return Plan(words(reply))


def _fixture_plan(name: str, first: str | None, second: str | None, earlier: list[str]) -> Plan:
    count = int(first) if first else 0
    if name == "text":
        return Plan(text_tokens(count))
    if name == "bulk":
        size = max(1, int(second or 1))
        return Plan(["b" * (size - 1) + " "] * count)
    if name == "slow":
        return Plan(text_tokens(count), delay_s=int(second or 0) / 1000)
    if name == "tool":
        return Plan(["Adding. "], ToolRequest("add", {"a": 2, "b": 3}))
    if name == "tool_error":
        return Plan(["Trying. "], ToolRequest("fail", {}))
    if name == "slow_tool":
        return Plan(["Sleeping. "], ToolRequest("sleep", {"ms": count}))
    if name == "model_error":
        return Plan(["Starting "], fail_after_tokens=True)
    if name == "recall":
        return Plan(words("recall:" + "|".join(earlier)))
    return Plan(words(f"Unknown fixture {name!r}."))


def plan_after_tool(part: ToolReturnPart | RetryPromptPart) -> Plan:
    name = part.tool_name
    if tool_failed(part):
        return Plan(words(f"The tool {name} failed: {part.content}"))
    if name == "add":
        return Plan(words(f"The sum is {part.content}."))
    if name == "calculator":
        return Plan(words(f"The result is {part.content}."))
    if name == "clock":
        return Plan(words(f"It is {part.content} (UTC)."))
    return Plan(words(f"Done: {part.content}."))


def next_plan(messages: list[ModelMessage], fixtures: bool) -> Plan:
    last = messages[-1] if messages else None
    if isinstance(last, ModelRequest):
        results = [p for p in last.parts if isinstance(p, ToolReturnPart | RetryPromptPart) and p.tool_name]
        if results:
            return plan_after_tool(results[-1])
        prompts = [
            p.content for p in last.parts if isinstance(p, UserPromptPart) and isinstance(p.content, str)
        ]
        if prompts:
            earlier = user_prompts(messages[:-1])
            return plan_for_prompt(prompts[-1], earlier, fixtures)
    return Plan(words("Hello."))


def offline_model(*, token_delay_s: float, fixtures: bool) -> FunctionModel:
    counter = {"calls": 0}

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
        plan = next_plan(messages, fixtures)
        delay = token_delay_s if plan.delay_s is None else plan.delay_s
        for token in plan.tokens:
            if delay:
                await asyncio.sleep(delay)
            yield token
        if plan.fail_after_tokens:
            raise OfflineModelFailure("the offline model failed on purpose (model_error fixture)")
        if plan.tool is not None:
            counter["calls"] += 1
            from pydantic_ai.models.function import DeltaToolCall

            yield {
                0: DeltaToolCall(
                    name=plan.tool.name,
                    json_args=json.dumps(plan.tool.arguments),
                    tool_call_id=f"call_{counter['calls']}",
                )
            }

    return FunctionModel(stream_function=stream, model_name="asp-offline")
