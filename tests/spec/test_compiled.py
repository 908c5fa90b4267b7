"""The compiled schema predicates (spec/compiled.py) are never looser than jsonschema.

A compiled predicate saying True lets a server skip jsonschema, so True must imply valid for every
instance: checked on every example of spec/examples and on generated near-valid messages. The
client messages must compile at all (else the server's fast path is gone), and their valid
examples must pass it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spec import EXAMPLES_DIR
from spec.compiled import compiled
from spec.resources import schema_documents
from spec.schemas import client_message_types, validator

EXAMPLES = sorted((EXAMPLES_DIR / "valid").glob("*.json")) + sorted((EXAMPLES_DIR / "invalid").glob("*.json"))


def _valid(name: str, instance: Any) -> bool:
    return not list(validator(name).iter_errors(instance))


@pytest.mark.parametrize("name", sorted(client_message_types()))
def test_every_client_message_schema_compiles_and_its_valid_examples_pass(name: str) -> None:
    check = compiled(name)
    assert check is not None
    for path in sorted((EXAMPLES_DIR / "valid").glob(f"{name}.*json")):
        assert check(json.loads(path.read_text())), path.name


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_compiled_predicate_never_passes_what_jsonschema_refuses(path: Path) -> None:
    instance = json.loads(path.read_text())
    for name in schema_documents():
        check = compiled(name)
        if check is not None and check(instance):
            assert _valid(name, instance), f"{name} passed {path.name}"


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(allow_nan=True)
    | st.text(max_size=6)
    | st.sampled_from(["", "a", "run_1", "run_1\n", "x" * 129, "ses_abc", "-a", "é"]),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=4,
)


@st.composite
def near_valid(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(client_message_types())))
    declared = list(schema_documents()[name]["properties"])
    keys = draw(st.lists(st.sampled_from([*declared, "x-vendor", "extra", "x", "type"]), max_size=5))
    message: dict[str, Any] = {key: draw(_values) for key in keys}
    if draw(st.booleans()):
        message["type"] = name
    return name, message


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_valid())
def test_generated_messages_passed_by_the_predicate_are_valid(case: tuple[str, dict[str, Any]]) -> None:
    name, message = case
    check = compiled(name)
    assert check is not None
    if check(message):
        assert _valid(name, message), message
