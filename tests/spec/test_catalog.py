"""The requirements catalog and PROTOCOL.md name the same requirements, at the same levels."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spec import PROTOCOL_VERSION, SPEC_DIR
from spec.catalog import LEVELS, TEST_METHODS, CatalogError, parse_catalog, parse_version, requirements
from spec.registry import capabilities, error_codes
from spec.resources import load_yaml

PROSE = (SPEC_DIR / "PROTOCOL.md").read_text()
ID_PATTERN = re.compile(r"ASP-[A-Z]+-\d{3}")
DEFINITION = re.compile(r"\*\*\[(ASP-[A-Z]+-\d{3})\]\*\*(.*)")
SECTIONS = {
    "transport",
    "versioning",
    "authentication",
    "session",
    "envelope",
    "client-messages",
    "run-lifecycle",
    "tools",
    "errors",
    "cancellation",
    "heartbeats",
    "limits",
    "duplicates",
    "history",
    "resume",
    "close-codes",
    "security",
    "conformance",
    "extensions",
}


def prose_definitions() -> dict[str, str]:
    """Each requirement ID defined in the prose, with the sentence that defines it."""
    found: dict[str, str] = {}
    for line in PROSE.splitlines():
        for match in DEFINITION.finditer(line):
            assert match.group(1) not in found, f"{match.group(1)} defined twice in PROTOCOL.md"
            found[match.group(1)] = match.group(2)
    return found


def test_every_prose_id_is_in_the_catalog_and_vice_versa() -> None:
    assert set(prose_definitions()) == set(requirements())


def test_ids_mentioned_anywhere_in_the_spec_exist() -> None:
    mentioned = set(ID_PATTERN.findall(PROSE))
    for name in ("registry.yaml", "lifecycle.yaml", "asyncapi.yaml"):
        mentioned |= set(ID_PATTERN.findall((SPEC_DIR / name).read_text()))
    assert mentioned - set(requirements()) == set()


def test_the_catalog_holds_at_least_sixty_requirements_across_all_sections() -> None:
    catalog = requirements()
    assert len(catalog) >= 60
    assert {r.section for r in catalog.values()} == SECTIONS


@pytest.mark.parametrize("requirement_id", sorted(requirements()))
def test_prose_states_the_catalog_level(requirement_id: str) -> None:
    requirement = requirements()[requirement_id]
    sentence = prose_definitions()[requirement_id]
    keywords = set(re.findall(r"\b(MUST|SHOULD|MAY)\b", sentence))
    assert requirement.level in keywords, (
        f"{requirement_id} is {requirement.level} but the prose says {keywords}"
    )
    assert requirement.level in LEVELS


@pytest.mark.parametrize("requirement_id", sorted(requirements()))
def test_requirement_says_how_it_can_be_tested(requirement_id: str) -> None:
    requirement = requirements()[requirement_id]
    assert requirement.method in TEST_METHODS
    assert requirement.binds in {"server", "client"}
    if requirement.method == "untestable":
        assert requirement.reason, f"{requirement_id} is untestable without a reason"
    if requirement.method == "capability":
        assert requirement.capability in capabilities()
    if requirement.binds == "client":
        assert requirement.method in ("client-driver", "untestable"), "a server checker cannot test clients"
    if requirement.method == "client-driver":
        assert requirement.binds == "client", "asp check-client judges clients only"


def test_catalog_ids_are_well_formed_and_unique() -> None:
    raw_ids = [entry["id"] for entry in load_yaml("requirements.yaml")["requirements"]]
    assert len(raw_ids) == len(set(raw_ids))
    assert all(ID_PATTERN.fullmatch(i) for i in raw_ids)


def test_registry_entries_cite_catalog_requirements() -> None:
    for code, entry in error_codes().items():
        assert entry["requirement"] in requirements(), code


def test_the_prose_close_code_table_matches_the_registry() -> None:
    from spec.registry import close_codes

    table_codes = {int(code) for code in re.findall(r"^\| (\d{4}) \|", PROSE, flags=re.MULTILINE)}
    assert table_codes == set(close_codes())


def test_the_prose_error_code_table_matches_the_registry() -> None:
    table_codes = set(re.findall(r"^\| `([a-z_]+)` \| (?:yes|no) \|", PROSE, flags=re.MULTILINE))
    assert table_codes == set(error_codes())


ENTRY = {
    "id": "ASP-TST-001",
    "level": "MUST",
    "section": "transport",
    "binds": "server",
    "statement": "s",
    "test": {"method": "black-box"},
}


def test_since_defaults_to_1_0_and_gates_by_minor_version() -> None:
    parsed = parse_catalog(
        {"version": "1.1", "requirements": [ENTRY, {**ENTRY, "id": "ASP-TST-002", "since": "1.1"}]}
    )
    old, new = parsed["ASP-TST-001"], parsed["ASP-TST-002"]
    assert old.since == "1.0" and new.since == "1.1"
    assert old.applies_to("1.0") and old.applies_to("1.1")
    assert not new.applies_to("1.0") and new.applies_to("1.1") and new.applies_to("1.10")
    with pytest.raises(ValueError):
        new.applies_to("1.1\n")


@pytest.mark.parametrize(
    "document",
    [
        {"version": "1.1", "requirements": [{**ENTRY, "sinse": "1.1"}]},
        {"version": "1.1", "requirements": [{**ENTRY, "test": {"method": "black-box", "reasons": "x"}}]},
        {"version": "1.1", "requirements": [ENTRY], "extra": 1},
        {"version": "1.1", "requirements": [{**ENTRY, "level": "must"}]},
        {"version": "1.1", "requirements": [{**ENTRY, "test": {"method": "manual"}}]},
        {"version": "1.1", "requirements": [{**ENTRY, "since": "1.1.0"}]},
        {"version": "1.1", "requirements": [ENTRY, ENTRY]},
        {"version": "1.1", "requirements": [{k: v for k, v in ENTRY.items() if k != "binds"}]},
    ],
    ids=[
        "unknown-key",
        "unknown-test-key",
        "unknown-top-key",
        "bad-level",
        "bad-method",
        "bad-since",
        "duplicate",
        "missing-key",
    ],
)
def test_the_loader_fails_loudly_on_a_malformed_catalog(document: dict[str, object]) -> None:
    with pytest.raises(CatalogError):
        parse_catalog(document)


def test_new_requirements_are_marked_with_the_version_that_added_them() -> None:
    catalog = requirements()
    assert {r.since for r in catalog.values()} <= {"1.0", PROTOCOL_VERSION}
    assert all(parse_version(r.since) <= parse_version(PROTOCOL_VERSION) for r in catalog.values())
    assert any(r.since == PROTOCOL_VERSION for r in catalog.values())


HEADINGS = {int(n) for n in re.findall(r"^## (\d+)\. ", PROSE, flags=re.MULTILINE)}
SECTION_REFERENCE = re.compile(r"§(\d+)|PROTOCOL\.md section (\d+)|\(section (\d+)\)")
SPEC_TEXTS = sorted(
    path
    for path in SPEC_DIR.rglob("*")
    if path.is_file() and path.suffix in {".md", ".yaml", ".py", ".json"} and "examples" not in path.parts
)


@pytest.mark.parametrize("path", SPEC_TEXTS, ids=lambda p: p.relative_to(SPEC_DIR).as_posix())
def test_every_section_reference_names_a_section_of_protocol_md(path: Path) -> None:
    text = path.read_text()
    referenced = {int(next(g for g in m.groups() if g)) for m in SECTION_REFERENCE.finditer(text)}
    assert referenced - HEADINGS == set(), f"{path.name} refers to sections PROTOCOL.md does not have"


@pytest.mark.parametrize("path", SPEC_TEXTS, ids=lambda p: p.relative_to(SPEC_DIR).as_posix())
def test_every_requirement_id_named_in_a_spec_file_exists(path: Path) -> None:
    mentioned = set(ID_PATTERN.findall(path.read_text()))
    assert mentioned - set(requirements()) == set(), f"{path.name} names requirements the catalog lacks"


def test_the_section_reference_test_would_catch_a_dangling_reference() -> None:
    assert 20 not in HEADINGS and SECTION_REFERENCE.search("vendor members (§20)")
    assert "ASP-FOO-001" not in requirements() and ID_PATTERN.search("see ASP-FOO-001")
