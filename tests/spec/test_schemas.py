"""The schemas are valid 2020-12, the examples hold to them, and the entry schemas dispatch by type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from spec import EXAMPLES_DIR
from spec.resources import message_schema_names, schema_documents
from spec.schemas import check_client_message, check_server_event, validator

VALID = sorted((EXAMPLES_DIR / "valid").glob("*.json"))
INVALID = sorted((EXAMPLES_DIR / "invalid").glob("*.json"))
EXPECTED_INVALID: dict[str, dict[str, str]] = yaml.safe_load(
    (EXAMPLES_DIR / "invalid" / "expected.yaml").read_text()
)


def load(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", sorted(schema_documents()))
def test_schema_passes_the_2020_12_metaschema(name: str) -> None:
    document = schema_documents()[name]
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(document)


def test_schema_ids_are_unique_and_follow_the_file_names() -> None:
    ids = {name: doc["$id"] for name, doc in schema_documents().items()}
    assert len(set(ids.values())) == len(ids)
    for name, schema_id in ids.items():
        assert schema_id == f"https://agentstreamprotocol.org/schema/v1/{name}.json"


@pytest.mark.parametrize("direction", ["server", "client"])
def test_every_message_type_has_a_valid_example(direction: str) -> None:
    examples = {path.name.split(".")[0] for path in VALID}
    missing = set(message_schema_names(direction)) - examples
    assert not missing, f"no valid example for {sorted(missing)}"


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_example_validates(path: Path) -> None:
    message = load(path)
    kind = message["type"]
    if kind in message_schema_names("client"):
        assert check_client_message(message) == []
        assert list(validator("client-message").iter_errors(message)) == []
    else:
        assert check_server_event(message) == []
        assert list(validator("server-event").iter_errors(message)) == []


def test_every_invalid_example_is_explained_and_every_explanation_has_a_file() -> None:
    assert {path.name for path in INVALID} == set(EXPECTED_INVALID)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_example_fails_for_its_named_reason(path: Path) -> None:
    expected = EXPECTED_INVALID[path.name]
    message = load(path)
    errors = list(validator(expected["schema"]).iter_errors(message))
    assert errors, f"{path.name} validates, but should break: {expected['breaks']}"
    found = {(error.validator, "".join(f"/{p}" for p in error.absolute_path)) for error in errors}
    assert (expected["keyword"], expected["pointer"]) in found, f"{path.name}: got {sorted(found)}"
    client_schemas = {*message_schema_names("client"), "client-message"}
    entry = "client-message" if expected["schema"] in client_schemas else "server-event"
    assert list(validator(entry).iter_errors(message)), f"{entry} accepts {path.name}"


@pytest.mark.parametrize("entry,direction", [("server-event", "server"), ("client-message", "client")])
def test_entry_schema_dispatches_on_type_to_the_type_schema(entry: str, direction: str) -> None:
    """A message valid for one type's schema but labelled with another type is rejected by the entry."""
    examples = {path.name.split(".")[0]: load(path) for path in VALID if "." not in path.stem}
    for kind in message_schema_names(direction):
        message = examples[kind]
        assert not list(validator(entry).iter_errors(message))
        for other in message_schema_names(direction):
            if other == kind:
                continue
            relabelled = {**message, "type": other}
            type_valid = not list(validator(other).iter_errors(relabelled))
            entry_valid = not list(validator(entry).iter_errors(relabelled))
            assert type_valid == entry_valid, f"{entry} disagrees with {other}.json on a relabelled {kind}"


def test_entry_schema_rejects_unknown_types() -> None:
    assert list(validator("server-event").iter_errors({"type": "nope", "seq": 1}))
    assert list(validator("client-message").iter_errors({"type": "nope"}))
    assert list(validator("client-message").iter_errors({"content": "no type"}))


def test_vendor_extension_members_are_allowed_and_other_members_are_not() -> None:
    event = {"type": "pong", "seq": 3}
    assert check_server_event({**event, "x-trace-id": "abc"}) == []
    assert check_server_event({**event, "trace_id": "abc"}) != []
