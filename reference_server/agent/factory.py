"""Builds the agent from settings: the offline model by default, any pydantic-ai model by name."""

from __future__ import annotations

from typing import Any

from pydantic_ai import Agent
from pydantic_ai.models import Model

from reference_server.agent.offline_model import offline_model
from reference_server.agent.tools import demo_toolset, fixture_toolset
from reference_server.config import Settings

INSTRUCTIONS = (
    "You are a helpful assistant. Use the calculator for arithmetic and the clock for the time. Be concise."
)


def build_model(settings: Settings) -> Model | str:
    if settings.model == "offline":
        return offline_model(token_delay_s=settings.token_delay_ms / 1000, fixtures=settings.fixtures)
    return settings.model  # resolved by pydantic-ai, with the provider's API key from the environment


def build_agent(settings: Settings) -> Agent[None, str | None]:
    """The agent. Its output may be None: a run that produces no text is a valid ASP run
    (`asp-fixture:text 0`, or a model with nothing to add after a tool)."""
    toolsets: list[Any] = [demo_toolset()]
    if settings.fixtures:
        toolsets.append(fixture_toolset())
    agent: Agent[None, str | None] = Agent(
        build_model(settings),
        output_type=str | None,  # type: ignore[arg-type]
        instructions=INSTRUCTIONS,
        toolsets=toolsets,
        retries=1,
    )
    return agent
