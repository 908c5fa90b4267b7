"""The requirements catalog (requirements.yaml) as typed records."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from spec.resources import load_yaml

LEVELS = ("MUST", "SHOULD", "MAY")
TEST_METHODS = ("black-box", "capability", "fixture", "untestable")


@dataclass(frozen=True)
class Requirement:
    id: str
    level: str
    section: str
    binds: str
    statement: str
    method: str
    capability: str | None = None
    needs: tuple[str, ...] = field(default_factory=tuple)
    reason: str | None = None

    @property
    def testable(self) -> bool:
        return self.method != "untestable"


@cache
def requirements() -> dict[str, Requirement]:
    """All requirements by ID, in catalog order."""
    catalog: dict[str, Requirement] = {}
    for raw in load_yaml("requirements.yaml")["requirements"]:
        test = raw["test"]
        catalog[raw["id"]] = Requirement(
            id=raw["id"],
            level=raw["level"],
            section=raw["section"],
            binds=raw["binds"],
            statement=raw["statement"],
            method=test["method"],
            capability=test.get("capability"),
            needs=tuple(test.get("needs", ())),
            reason=test.get("reason"),
        )
    return catalog


def requirement(requirement_id: str) -> Requirement:
    """One requirement; KeyError names an ID that is not in the catalog."""
    return requirements()[requirement_id]
