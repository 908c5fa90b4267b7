"""The offline deterministic model: streams token by token, calls tools when asked, no API key.

Plans are pure functions of the conversation so far, so tests and the conformance kit can predict
every event. Fixture prompts (registry.yaml) are honoured only when fixtures are enabled.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
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
    delay_s: float | None = None  # None: the server's token delay; fixtures set their own
    fail_after_tokens: bool = False


_CALCULATION = re.compile(r"(?:calculate|compute|what is|what's)\s+([-+*/%().\d\s]+\d[-+*/%().\d\s]*)", re.I)
_TIME = re.compile(r"\b(time|clock|date)\b", re.I)
_FIXTURE = re.compile(r"asp-fixture:([a-z_]+)((?: [0-9]{1,9})*)")  # longer numbers are out of range anyway
MAX_TOKENS = 100_000
MAX_MS = 60_000
MAX_BULK_SIZE = 65_536
_clock = time.monotonic  # the paced schedule's clock and sleep (asyncio's loop clock is monotonic too)
_sleep = asyncio.sleep


def words(text: str) -> list[str]:
    """Split text into tokens that keep their trailing space, so the deltas rebuild it exactly."""
    return re.findall(r"\S+\s*|\s+", text)


def fixture_plan(prompt: str, earlier_prompts: list[str]) -> Plan | None:
    """The plan of a fixture prompt exactly as registry.yaml defines it (ASP-CAP-004), or None.

    A prompt that starts like a fixture but is not one of its forms (unknown name, wrong count
    of numbers, a number out of range) is an ordinary message.
    """
    match = _FIXTURE.fullmatch(prompt)
    if match is None:
        return None
    name = match.group(1)
    numbers = [int(n) for n in match.group(2).split()]
    if name == "text" and len(numbers) == 1 and numbers[0] <= MAX_TOKENS:
        return Plan(text_tokens(numbers[0]))
    if name == "slow" and len(numbers) == 2 and numbers[0] <= MAX_TOKENS and numbers[1] <= MAX_MS:
        return Plan(text_tokens(numbers[0]), delay_s=numbers[1] / 1000)
    if name == "bulk" and len(numbers) == 2 and numbers[0] >= 1 and 1 <= numbers[1] <= MAX_BULK_SIZE:
        return Plan(["b" * (numbers[1] - 1) + " "] * numbers[0], delay_s=0.0)  # never paced
    if name == "slow_tool" and len(numbers) == 1 and numbers[0] <= MAX_MS:
        return Plan([], ToolRequest("sleep", {"ms": numbers[0]}))
    if numbers:
        return None
    if name == "tool":
        return Plan([], ToolRequest("add", {"a": 2, "b": 3}))
    if name == "tool_error":
        return Plan([], ToolRequest("fail", {}))
    if name == "model_error":
        return Plan(text_tokens(1), fail_after_tokens=True)
    if name == "recall":
        return Plan(words("recall:" + "|".join(earlier_prompts)))
    return None


def plan_for_prompt(prompt: str, earlier_prompts: list[str], fixtures: bool) -> Plan:
    planned = fixture_plan(prompt, earlier_prompts) if fixtures else None
    if planned is not None:
        return planned
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


FIXTURE_ANSWERS = {"add": "The sum is {content}.", "sleep": "Done.", "fail": "The tool failed."}


def plan_after_tool(part: ToolReturnPart | RetryPromptPart, fixtures: bool) -> Plan:
    name = part.tool_name or ""
    if fixtures and name in FIXTURE_ANSWERS:
        return Plan(words(FIXTURE_ANSWERS[name].format(content=part.content)))
    if tool_failed(part):
        return Plan(words(f"The tool {name} failed: {part.content}"))
    if name == "calculator":
        return Plan(words(f"The result is {part.content}."))
    if name == "clock":
        return Plan(words(f"It is {part.content} (UTC)."))
    return Plan(words(f"Done: {part.content}."))


def next_plan(messages: list[ModelMessage], fixtures: bool) -> Plan:
    """What to do next, from the conversation so far. The user's new prompt, when the last request
    holds one, is what gets answered: tool returns that pydantic-ai adds beside it (to repair a
    call an earlier, cancelled run left open) never take its place (ASP-HIS-003)."""
    last = messages[-1] if messages else None
    if isinstance(last, ModelRequest):
        prompts = [
            p.content for p in last.parts if isinstance(p, UserPromptPart) and isinstance(p.content, str)
        ]
        if prompts:
            earlier = user_prompts(messages[:-1])
            return plan_for_prompt(prompts[-1], earlier, fixtures)
        results = [p for p in last.parts if isinstance(p, ToolReturnPart | RetryPromptPart) and p.tool_name]
        if results:
            return plan_after_tool(results[-1], fixtures)
    return Plan(words("Hello."))


def offline_model(*, token_delay_s: float, fixtures: bool) -> FunctionModel:
    counter = {"calls": 0}

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
        plan = next_plan(messages, fixtures)
        delay = token_delay_s if plan.delay_s is None else plan.delay_s
        # The first token at once, then token n due at start + n * delay (registry: slow): a deadline
        # schedule, as a provider's tokens arrive from the network whatever our processing costs;
        # sleeping `delay` after each token would add that cost and the loop's lag to every gap.
        start = _clock()
        for number, token in enumerate(plan.tokens):
            if delay and number:
                left = start + number * delay - _clock()
                if left > 0:
                    await _sleep(left)
            yield token
        if not plan.tokens and plan.tool is None:
            yield ""  # a run with no text (text 0): an empty answer, which the agent takes as None
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
