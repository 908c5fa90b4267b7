"""The offline model's plans as tables: fixtures exactly as registry.yaml says (defect 10), and the
user's new prompt answered even beside repaired tool returns (defect 13). No sockets."""

from __future__ import annotations

import pytest
from pydantic_ai.messages import ModelRequest, ModelResponse, ToolCallPart, ToolReturnPart, UserPromptPart

from reference_server.agent.offline_model import Plan, ToolRequest, fixture_plan, next_plan
from spec.fixtures import text_tokens


@pytest.mark.parametrize(
    "prompt,plan",
    [
        ("asp-fixture:text 3", Plan(text_tokens(3))),
        ("asp-fixture:text 0", Plan([])),
        ("asp-fixture:slow 2 250", Plan(text_tokens(2), delay_s=0.25)),
        ("asp-fixture:bulk 2 3", Plan(["bb ", "bb "], delay_s=0.0)),  # never paced by the server's delay
        ("asp-fixture:tool", Plan([], ToolRequest("add", {"a": 2, "b": 3}))),  # no text before the call
        ("asp-fixture:tool_error", Plan([], ToolRequest("fail", {}))),
        ("asp-fixture:slow_tool 40", Plan([], ToolRequest("sleep", {"ms": 40}))),
        ("asp-fixture:model_error", Plan(["t0 "], fail_after_tokens=True)),
        ("asp-fixture:bulk 2 0", None),  # not a fixture: an ordinary message
        ("asp-fixture:bulk 0 3", None),
        ("asp-fixture:bulk 1 65537", None),
        ("asp-fixture:text 100001", None),
        ("asp-fixture:slow 1 60001", None),
        ("asp-fixture:slow_tool 60001", None),
        ("asp-fixture:text", None),
        ("asp-fixture:recall 1", None),
        ("asp-fixture:text 3 ", None),
        ("asp-fixture:unknown", None),
    ],
)
def test_fixture_forms(prompt: str, plan: Plan | None):
    assert fixture_plan(prompt, []) == plan


def test_defect_13_the_new_prompt_wins_over_repaired_tool_returns():
    """pydantic-ai repairs a call an earlier, cancelled run left open by adding a tool return to the
    request that carries the next prompt: the model answers the prompt."""
    messages = [
        ModelRequest(parts=[UserPromptPart(content="asp-fixture:slow_tool 3000")]),
        ModelResponse(parts=[ToolCallPart(tool_name="sleep", args={"ms": 3000}, tool_call_id="call_1")]),
        ModelRequest(
            parts=[
                ToolReturnPart(
                    tool_name="sleep", content="interrupted", tool_call_id="call_1", outcome="interrupted"
                ),
                UserPromptPart(content="asp-fixture:text 3"),
            ]
        ),
    ]
    assert next_plan(messages, fixtures=True) == Plan(text_tokens(3))


def test_after_a_tool_the_fixture_answers_as_the_registry_says():
    def after(name: str, content: object, outcome: str = "success") -> Plan:
        return next_plan(
            [
                ModelRequest(
                    parts=[ToolReturnPart(tool_name=name, content=content, tool_call_id="c", outcome=outcome)]
                )
            ],  # type: ignore[arg-type]
            fixtures=True,
        )

    assert "".join(after("add", 5).tokens) == "The sum is 5."
    assert "".join(after("sleep", {"slept_ms": 5}).tokens) == "Done."
    assert "".join(after("fail", "failed", "failed").tokens) == "The tool failed."


async def test_a_paced_stream_keeps_its_schedule_whatever_the_consumer_costs(monkeypatch: pytest.MonkeyPatch):
    """Token n is due at start + n * delay (registry: slow): the time the consumer spends on each
    token comes out of the next sleep instead of adding to every gap. A fake clock, no real waits."""
    from reference_server.agent import offline_model as module

    now = [100.0]
    due: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr(module, "_clock", lambda: now[0])
    monkeypatch.setattr(module, "_sleep", fake_sleep)
    model = module.offline_model(token_delay_s=0.0, fixtures=True)
    messages = [ModelRequest(parts=[UserPromptPart(content="asp-fixture:slow 5 20")])]
    async for _ in model.stream_function(messages, None):  # type: ignore[arg-type, misc]
        due.append(round(now[0] - 100.0, 6))
        now[0] += 0.015  # the consumer's work on each token: 15 ms of a 20 ms pace
    assert due == [0.0, 0.02, 0.04, 0.06, 0.08]  # first at once, then on the 20 ms grid

    now[0], due[:] = 100.0, []
    async for _ in model.stream_function(messages, None):  # type: ignore[arg-type, misc]
        due.append(round(now[0] - 100.0, 6))
        now[0] += 0.05  # a consumer slower than the pace: late tokens follow at once, no sleep
    assert due == [0.0, 0.05, 0.1, 0.15, 0.2]
