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
