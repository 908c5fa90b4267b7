"""The requirements catalog (requirements.yaml) as typed records.

The loader fails loudly: an unknown key, a missing key or a value outside its set raises
`CatalogError` at first use, so a typo in the catalog never silently drops a rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from spec.resources import load_yaml

LEVELS = ("MUST", "SHOULD", "MAY")
TEST_METHODS = ("black-box", "capability", "fixture", "client-driver", "untestable")
BINDS = ("server", "client")
FIRST_VERSION = "1.0"
_VERSION = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
_ENTRY_KEYS = {"id", "level", "section", "binds", "statement", "test", "since", "withdrawn"}
_REQUIRED_KEYS = {"id", "level", "section", "binds", "statement", "test"}
_TEST_KEYS = {"method", "capability", "needs", "reason"}
_TOP_KEYS = {"version", "compliance_levels", "requirements"}
_LEVEL_KEYS = {"extends", "adds", "declares"}
_ADDS_KEYS = {"level", "capability"}
CAPABILITY_SELECTORS = ("none", "any", "declared")


class CatalogError(ValueError):
    """requirements.yaml breaks the catalog's own shape (unknown key, bad value, duplicate ID)."""


def parse_version(version: str) -> tuple[int, int]:
    """`"1.1"` -> `(1, 1)`. Raises ValueError for anything but MAJOR.MINOR in decimal digits."""
    match = _VERSION.fullmatch(version) if isinstance(version, str) else None
    if match is None:
        raise ValueError(f"not a MAJOR.MINOR protocol version: {version!r}")
    return int(match.group(1)), int(match.group(2))


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
    since: str = FIRST_VERSION
    withdrawn: bool = False

    @property
    def testable(self) -> bool:
        return self.method != "untestable"

    def applies_to(self, protocol_version: str) -> bool:
        """Whether a server announcing `protocol_version` (its session's MAJOR.MINOR) is held to this
        requirement: it is, from the minor version that introduced it on (PROTOCOL.md section 18).

        Raises ValueError when `protocol_version` is not MAJOR.MINOR.
        """
        return parse_version(protocol_version) >= parse_version(self.since)


def _unknown(keys: set[str], allowed: set[str], where: str) -> None:
    extra = keys - allowed
    if extra:
        raise CatalogError(f"{where}: unknown key(s) {sorted(extra)}; allowed: {sorted(allowed)}")


def _one(raw: Any) -> Requirement:
    if not isinstance(raw, dict):
        raise CatalogError(f"a catalog entry must be a mapping, got {raw!r}")
    where = f"requirements.yaml {raw.get('id', '<no id>')}"
    _unknown(set(raw), _ENTRY_KEYS, where)
    missing = _REQUIRED_KEYS - set(raw)
    if missing:
        raise CatalogError(f"{where}: missing key(s) {sorted(missing)}")
    test = raw["test"]
    if not isinstance(test, dict):
        raise CatalogError(f"{where}: test must be a mapping")
    _unknown(set(test), _TEST_KEYS, f"{where} test")
    requirement = Requirement(
        id=raw["id"],
        level=raw["level"],
        section=raw["section"],
        binds=raw["binds"],
        statement=raw["statement"],
        method=test.get("method", ""),
        capability=test.get("capability"),
        needs=tuple(test.get("needs", ())),
        reason=test.get("reason"),
        since=raw.get("since", FIRST_VERSION),
        withdrawn=bool(raw.get("withdrawn", False)),
    )
    for value, allowed, name in (
        (requirement.level, LEVELS, "level"),
        (requirement.method, TEST_METHODS, "test.method"),
        (requirement.binds, BINDS, "binds"),
    ):
        if value not in allowed:
            raise CatalogError(f"{where}: {name} {value!r} is not one of {list(allowed)}")
    try:
        parse_version(requirement.since)
    except ValueError as exc:
        raise CatalogError(f"{where}: since: {exc}") from None
    return requirement


@cache
def requirements() -> dict[str, Requirement]:
    """All requirements by ID, in catalog order. Raises CatalogError when the catalog is malformed."""
    return parse_catalog(load_yaml("requirements.yaml"))


def parse_catalog(document: Any) -> dict[str, Requirement]:
    """A parsed requirements.yaml document as records by ID. Raises CatalogError on any key or value
    the catalog's shape does not allow, and on a repeated ID."""
    if not isinstance(document, dict):
        raise CatalogError("requirements.yaml must be a mapping")
    _unknown(set(document), _TOP_KEYS, "requirements.yaml")
    catalog: dict[str, Requirement] = {}
    for raw in document["requirements"]:
        requirement = _one(raw)
        if requirement.id in catalog:
            raise CatalogError(f"requirements.yaml: {requirement.id} appears twice")
        catalog[requirement.id] = requirement
    return catalog


def requirement(requirement_id: str) -> Requirement:
    """One requirement; KeyError names an ID that is not in the catalog."""
    return requirements()[requirement_id]


@dataclass(frozen=True)
class ComplianceLevel:
    """One compliance level of requirements.yaml `compliance_levels` (PROTOCOL.md section 18)."""

    name: str
    levels: tuple[str, ...]  # MUST / SHOULD / MAY this level adds
    capability: str  # "none", "any" or "declared": which of them it adds
    extends: str | None = None
    declares: tuple[str, ...] = ()  # capabilities a server must declare to reach the level

    def adds(self, requirement: Requirement, declared: frozenset[str]) -> bool:
        """Whether this level adds `requirement` for a party that declared `declared`."""
        if requirement.level not in self.levels:
            return False
        if self.capability == "none":
            return requirement.capability is None
        if self.capability == "declared":
            return requirement.capability is not None and requirement.capability in declared
        return True


def _level(name: str, raw: Any, known: dict[str, ComplianceLevel]) -> ComplianceLevel:
    where = f"requirements.yaml compliance_levels {name}"
    if not isinstance(raw, dict) or not isinstance(raw.get("adds"), dict):
        raise CatalogError(f"{where}: must be a mapping with `adds`")
    _unknown(set(raw), _LEVEL_KEYS, where)
    _unknown(set(raw["adds"]), _ADDS_KEYS, f"{where} adds")
    level = ComplianceLevel(
        name=name,
        levels=tuple(raw["adds"].get("level", ())),
        capability=raw["adds"].get("capability", ""),
        extends=raw.get("extends"),
        declares=tuple(raw.get("declares", ())),
    )
    if not level.levels or any(value not in LEVELS for value in level.levels):
        raise CatalogError(f"{where}: adds.level {list(level.levels)} must be some of {list(LEVELS)}")
    if level.capability not in CAPABILITY_SELECTORS:
        raise CatalogError(
            f"{where}: adds.capability {level.capability!r} is not one of {list(CAPABILITY_SELECTORS)}"
        )
    if level.extends is not None and level.extends not in known:
        raise CatalogError(f"{where}: extends {level.extends!r}, which is not a level defined before it")
    return level


@cache
def compliance_levels() -> dict[str, ComplianceLevel]:
    """The compliance levels of requirements.yaml by name, lowest first. Raises CatalogError when
    malformed (see `parse_levels`)."""
    return parse_levels(load_yaml("requirements.yaml").get("compliance_levels"))


def parse_levels(raw: Any) -> dict[str, ComplianceLevel]:
    """A parsed `compliance_levels` mapping as records. Raises CatalogError on an unknown key, a
    value outside its set, or a level that extends one not defined before it."""
    if not isinstance(raw, dict) or not raw:
        raise CatalogError("requirements.yaml: compliance_levels must be a non-empty mapping")
    levels: dict[str, ComplianceLevel] = {}
    for name, entry in raw.items():
        levels[str(name)] = _level(str(name), entry, levels)
    return levels


def level_requirements(name: str, candidates: list[Requirement], declared: frozenset[str]) -> list[str]:
    """The IDs a compliance level holds among `candidates` (in their order, each once): those of the
    level it extends, then those it adds. Raises KeyError for an unknown level."""
    level = compliance_levels()[name]
    held = level_requirements(level.extends, candidates, declared) if level.extends else []
    held += [r.id for r in candidates if level.adds(r, declared)]
    return list(dict.fromkeys(held))
