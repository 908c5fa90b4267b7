"""Everything that restates the schemas (registry, typed shapes) is held to them."""

from __future__ import annotations

from typing import Any, get_args, get_type_hints

import pytest

from spec.messages import CLIENT_MESSAGES, NESTED, SERVER_EVENTS, CloseCodeName, ErrorCode
from spec.registry import capabilities, close_codes, error_codes
from spec.resources import message_schema_names, schema_documents


def enum_of(schema: dict[str, Any]) -> set[str]:
    for branch in schema["anyOf"]:
        if "enum" in branch:
            return set(branch["enum"])
    raise AssertionError("no enum branch")


def test_error_code_enum_is_the_registry() -> None:
    assert enum_of(schema_documents()["common"]["$defs"]["error_code"]) == set(error_codes())


def test_error_code_literal_type_is_the_registry() -> None:
    assert set(get_args(ErrorCode)) == set(error_codes())


def test_close_code_name_literal_type_is_the_registry() -> None:
    names = [entry.name for entry in close_codes().values()]
    assert len(names) == len(set(names)), "close-code names are unique"
    assert set(get_args(CloseCodeName)) == set(names)


def test_capability_enum_is_the_registry() -> None:
    assert enum_of(schema_documents()["common"]["$defs"]["capability"]) == set(capabilities())


def test_typed_shapes_cover_every_message_type() -> None:
    assert set(SERVER_EVENTS) == set(message_schema_names("server"))
    assert set(CLIENT_MESSAGES) == set(message_schema_names("client"))


def assert_shape_matches(shape: type, schema: dict[str, Any], label: str) -> None:
    fields = set(get_type_hints(shape))
    required = set(getattr(shape, "__required_keys__", set()))
    assert fields == set(schema["properties"]), f"{label}: fields differ from the schema"
    assert required == set(schema.get("required", [])), f"{label}: required fields differ from the schema"


@pytest.mark.parametrize("name", sorted({**SERVER_EVENTS, **CLIENT_MESSAGES}))
def test_typed_shape_matches_its_schema(name: str) -> None:
    shape = {**SERVER_EVENTS, **CLIENT_MESSAGES}[name]
    assert_shape_matches(shape, schema_documents()[name], name)


@pytest.mark.parametrize("label", sorted(NESTED))
def test_nested_typed_shape_matches_its_schema(label: str) -> None:
    document, path, shape = NESTED[label]
    schema = schema_documents()[document]
    for key in path:
        schema = schema[key]
    assert_shape_matches(shape, schema, label)
