"""Cases as data plus a coroutine: which requirements each proves and what it needs to run."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spec.catalog import requirements
from spec.oracle import oracle_requirements

if TYPE_CHECKING:
    from conformance.context import CaseContext

CaseBody = Callable[["CaseContext"], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Case:
    """One conformance case: the requirements it proves, what it needs, how it may be scheduled.

    A case has no fixed time cap: its budget grows with the waits inside it (CaseContext.allow).
    `realtime` cases wait on real time (idle timeouts, long runs) and run beside the others;
    an `exclusive` case needs the server to itself (it fills the connection limit); `connections`
    is the most connections the case holds at once; `supersedes`: they are all one user's, each
    superseding the one before, so on a server that admits a superseding connection at its limit
    (ASP-LIM-007, since 1.1) they need one slot.
    """

    id: str
    title: str
    requirements: tuple[str, ...]
    body: CaseBody
    # The gates, each the catalog's (catalog_gates) plus what the case adds for its own method:
    capabilities: tuple[str, ...] = ()  # not declared -> not applicable
    fixtures: bool = False  # fixtures capability absent -> untestable
    needs: tuple[str, ...] = ()  # jwt_secret, two_users, many_users, max_connections
    order: int = 0  # cases that exhaust budgets (rate limit) run late
    realtime: bool = False
    exclusive: bool = False
    connections: int = 1
    supersedes: bool = False

    @property
    def section(self) -> str:
        return requirements()[self.requirements[0]].section


CASES: dict[str, Case] = {}


def catalog_gates(
    requirement_ids: list[str] | tuple[str, ...],
) -> tuple[tuple[str, ...], bool, tuple[str, ...]]:
    """(capabilities, fixtures, needs): the gates a case citing these requirements gets from their
    `test:` entries in requirements.yaml. The first requirement, the one the case is about, decides
    the capability (`test.capability`) and whether fixtures are needed (`test.method: fixture`);
    the needs are those of every cited requirement. A case checks its other requirements only
    when they apply (a capability it finds declared, a version the server announces).

    Raises KeyError for an ID that is not in the catalog.
    """
    catalog = requirements()
    primary = catalog[requirement_ids[0]]
    capabilities = (primary.capability,) if primary.capability else ()
    needs = tuple(dict.fromkeys(need for r in requirement_ids for need in catalog[r].needs))
    return capabilities, primary.method == "fixture", needs


def case(
    case_id: str,
    title: str,
    requirements_: list[str],
    *,
    capabilities: tuple[str, ...] = (),
    fixtures: bool = False,
    needs: tuple[str, ...] = (),
    order: int = 0,
    realtime: bool = False,
    exclusive: bool = False,
    connections: int = 1,
    supersedes: bool = False,
) -> Callable[[CaseBody], CaseBody]:
    """Register a case; every requirement it cites must exist in the catalog.

    Its gates default from the cited requirements (`catalog_gates`); `capabilities`, `fixtures`
    and `needs` add only what the case's own method needs beyond them (fixtures to drive a long
    run, cancel to reach an open tool call, many users to fill the connection limit).
    """
    unknown = [r for r in requirements_ if r not in requirements()]
    if unknown:
        raise ValueError(f"case {case_id} cites unknown requirements {unknown}")
    if not requirements_:
        raise ValueError(f"case {case_id} cites no requirement")
    implied_capabilities, implied_fixtures, implied_needs = catalog_gates(requirements_)
    capabilities = tuple(dict.fromkeys((*implied_capabilities, *capabilities)))
    fixtures = implied_fixtures or fixtures
    needs = tuple(dict.fromkeys((*implied_needs, *needs)))

    def register(body: CaseBody) -> CaseBody:
        if case_id in CASES:
            raise ValueError(f"case {case_id} registered twice")
        CASES[case_id] = Case(
            case_id,
            title,
            tuple(requirements_),
            body,
            capabilities,
            fixtures,
            needs,
            order,
            realtime,
            exclusive,
            connections,
            supersedes,
        )
        return body

    return register


def all_cases() -> list[Case]:
    """Every registered case, in run order."""
    import conformance.cases  # noqa: F401  (registers the cases)

    order = list(CASES)
    return sorted(
        CASES.values(),
        key=lambda c: (
            c.order,
            SECTION_ORDER.index(c.id.split(".")[0])
            if c.id.split(".")[0] in SECTION_ORDER
            else len(SECTION_ORDER),
            order.index(c.id),
        ),
    )


SECTION_ORDER = [
    "handshake",
    "auth",
    "session",
    "runs",
    "tools",
    "errors",
    "duplicates",
    "history",
    "resume",
    "limits",
    "heartbeats",
]


# The kit's own check over every frame a case receives, beside the oracle's: a token it used
# echoed back by the server (conformance.runner._oracle_findings).
TOKEN_ECHO = "ASP-AUTH-007"

# Requirements the always-on oracle judges on every frame of every case: the oracle's frame checks
# and every requirement of spec/lifecycle.yaml (spec.oracle.oracle_requirements), and TOKEN_ECHO.
ORACLE_REQUIREMENTS = (*oracle_requirements(), TOKEN_ECHO)
