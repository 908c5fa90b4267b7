"""Client scenarios as data plus a coroutine: which client requirements each judges."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spec.catalog import parse_version, requirements

if TYPE_CHECKING:
    from conformance.client.context import ScenarioContext

ScenarioBody = Callable[["ScenarioContext"], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    """One scripted server behaviour and what the client must do about it.

    `since` is the protocol version whose behaviour the scenario relies on (the newest `since` of
    its requirements unless given): a client checked as an older version finds it not applicable.
    `timeout_s` bounds the whole scenario (its own waits are bounded one by one).
    """

    id: str
    title: str
    requirements: tuple[str, ...]
    body: ScenarioBody
    since: str
    timeout_s: float

    @property
    def section(self) -> str:
        return requirements()[self.requirements[0]].section


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    scenario_id: str,
    title: str,
    requirements_: list[str],
    *,
    since: str | None = None,
    timeout_s: float = 20.0,
) -> Callable[[ScenarioBody], ScenarioBody]:
    """Register a scenario; every requirement it cites must be a client requirement of the catalog."""
    catalog = requirements()
    wrong = [r for r in requirements_ if r not in catalog or catalog[r].binds != "client"]
    if wrong or not requirements_:
        raise ValueError(f"scenario {scenario_id} cites no client requirement or unknown ones: {wrong}")
    newest = max((catalog[r].since for r in requirements_), key=parse_version)

    def register(body: ScenarioBody) -> ScenarioBody:
        if scenario_id in SCENARIOS:
            raise ValueError(f"scenario {scenario_id} registered twice")
        SCENARIOS[scenario_id] = Scenario(
            scenario_id, title, tuple(requirements_), body, since or newest, timeout_s
        )
        return body

    return register


# Run order by module: the quick ones first, the long backoff schedule last.
MODULE_ORDER = ("extensions", "resume", "errors", "heartbeats", "reconnect")


def all_scenarios() -> list[Scenario]:
    """Every registered scenario, in run order."""
    import conformance.client.cases  # noqa: F401  (registers the scenarios)

    def module(item: Scenario) -> int:
        name = item.body.__module__.rsplit(".", 1)[-1]
        return MODULE_ORDER.index(name) if name in MODULE_ORDER else len(MODULE_ORDER)

    registered = list(SCENARIOS)
    return sorted(SCENARIOS.values(), key=lambda s: (module(s), registered.index(s.id)))


# Requirements the always-on wire oracle judges on every connection of every scenario.
WIRE_REQUIREMENTS = ("ASP-TRN-003", "ASP-ENV-004", "ASP-AUTH-011", "ASP-AUTH-008")
