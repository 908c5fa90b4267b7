"""Builds the agent from settings: the offline model by default, any pydantic-ai model by name."""

from __future__ import annotations

import importlib.metadata
import re

from pydantic_ai import Agent
from pydantic_ai.exceptions import UserError
from pydantic_ai.models import Model, infer_model

from reference_server.agent.offline_model import offline_model
from reference_server.agent.tools import DEMO_TOOLS, FIXTURE_TOOLS
from reference_server.config import Settings
from reference_server.launch import StartupError

INSTRUCTIONS = (
    "You are a helpful assistant. Use the calculator for arithmetic and the clock for the time. Be concise."
)


PACKAGE = "agent-stream-protocol"
_PYDANTIC_AI_GROUP = re.compile(r"pydantic-ai-slim\[([A-Za-z0-9_-]+)\]")


class ModelUnavailable(StartupError):
    """ASP_MODEL names a model this installation cannot run; the message says why in one line."""


def providers_extra() -> set[str]:
    """The pydantic-ai optional groups this package's `providers` extra installs (from its metadata)."""
    try:
        requirements = importlib.metadata.requires(PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        return set()
    groups: set[str] = set()
    for requirement in requirements:
        name, _, marker = requirement.partition(";")
        if "providers" in marker and name.strip().startswith("pydantic-ai-slim["):
            groups.update(g.strip() for g in name.split("[", 1)[1].split("]", 1)[0].split(","))
    return groups


def build_model(settings: Settings) -> Model:
    """The offline model, or the pydantic-ai model `settings.model` names (its provider's API key
    from the provider's own environment variable).

    Raises ModelUnavailable, in one line, when the model string is unknown, its provider's package
    is not installed (naming the extra that installs it: `providers` for OpenAI and Anthropic) or the
    provider cannot be set up (no API key).
    """
    if settings.model == "offline":
        return offline_model(token_delay_s=settings.token_delay_ms / 1000, fixtures=settings.fixtures)
    try:
        return infer_model(settings.model)
    except ImportError as missing:
        group = _PYDANTIC_AI_GROUP.search(str(missing))
        if group and group.group(1) in providers_extra():
            install = f"pip install '{PACKAGE}[providers]'"
        elif group:
            install = f"pip install 'pydantic-ai-slim[{group.group(1)}]'"
        else:
            install = f"pip install '{PACKAGE}[providers]', or the package pydantic-ai asks for"
        raise ModelUnavailable(
            f"ASP_MODEL={settings.model} needs a provider package that is not installed: {install}"
        ) from None
    except UserError as refused:
        raise ModelUnavailable(f"ASP_MODEL={settings.model}: {_one_line(str(refused))}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def build_agent(settings: Settings) -> Agent[None, str | None]:
    """The agent. Its output may be None: a run that produces no text is a valid ASP run
    (`asp-fixture:text 0`, or a model with nothing to add after a tool).

    The tools go in the agent's own function toolset (`tools=`), not as toolsets of their own: the
    agent combines its toolsets at every run and step, and with more than one it runs each
    toolset's `for_run`, `for_run_step` and `get_tools` in a task group of one task per toolset.
    Measured in one process, the three agents' runs interleaved (offline model, a one-token run,
    CPU time to its first event, p50 of 1,500, a machine at load 4-5): 5.7-5.8 ms with the demo and
    fixture tools as two toolsets, 4.9-5.0 ms with them as `tools=`, 4.6 ms with no tools at all.
    """
    tools = [*DEMO_TOOLS, *FIXTURE_TOOLS] if settings.fixtures else [*DEMO_TOOLS]
    agent: Agent[None, str | None] = Agent(
        build_model(settings),
        output_type=str | None,  # type: ignore[arg-type]
        instructions=INSTRUCTIONS,
        tools=tools,
        retries=1,
    )
    return agent
