"""Cases as data plus a coroutine: which requirements each proves and what it needs to run."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spec.catalog import requirements

if TYPE_CHECKING:
    from conformance.context import CaseContext

CaseBody = Callable[["CaseContext"], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Case:
    """One conformance case: the requirements it proves, what it needs, how it may be scheduled.

    A case has no fixed time cap: its budget grows with the waits inside it (CaseContext.allow).
    `realtime` cases wait on real time (idle timeouts, long runs) and run beside the others;
    an `exclusive` case needs the server to itself (it fills the connection limit); `connections`
    is the most connections the case holds at once.
    """

    id: str
    title: str
    requirements: tuple[str, ...]
    body: CaseBody
    capabilities: tuple[str, ...] = ()  # not declared -> not applicable
    fixtures: bool = False  # fixtures capability absent -> untestable
    needs: tuple[str, ...] = ()  # jwt_secret, two_users, many_users, max_connections
    order: int = 0  # cases that exhaust budgets (rate limit) run late
    realtime: bool = False
    exclusive: bool = False
    connections: int = 1

    @property
    def section(self) -> str:
        return requirements()[self.requirements[0]].section


CASES: dict[str, Case] = {}


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
) -> Callable[[CaseBody], CaseBody]:
    """Register a case; every requirement it cites must exist in the catalog."""
    unknown = [r for r in requirements_ if r not in requirements()]
    if unknown:
        raise ValueError(f"case {case_id} cites unknown requirements {unknown}")

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


# Requirements the always-on oracle judges on every frame of every case.
ORACLE_REQUIREMENTS = (
    "ASP-TRN-001",
    "ASP-ENV-001",
    "ASP-ENV-002",
    "ASP-SES-001",
    "ASP-SES-005",
    "ASP-RUN-001",
    "ASP-RUN-002",
    "ASP-RUN-003",
    "ASP-RUN-005",
    "ASP-RUN-010",
    "ASP-TOOL-002",
    "ASP-TOOL-003",
    "ASP-TOOL-005",
    "ASP-TOOL-006",
    "ASP-ERR-007",
    "ASP-CAP-002",
    "ASP-EXT-003",
    "ASP-CLS-001",
    "ASP-AUTH-007",
)
