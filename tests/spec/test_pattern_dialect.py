"""JSON Schema `pattern` is ECMA-262: `$` is the end of the string, never "before a final newline".

Python's `re.search` accepts `"run_1\\n"` for `^...$`; the spec's validators must not. The cases
are generated from every anchored pattern in spec/schema, so a new pattern is covered at once.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spec.oracle import Oracle
from spec.resources import schema_documents
from spec.schemas import EcmaValidator, check_client_message, check_server_event, validator
from tests.support.events import session_event


def patterns(node: Any, where: str) -> list[tuple[str, str]]:
    """Every `pattern` value under a schema node, with a readable location."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            found.append((where, node["pattern"]))
        for key, value in node.items():
            found.extend(patterns(value, f"{where}/{key}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(patterns(value, f"{where}/{index}"))
    return found


ANCHORED = sorted(
    {
        (location, pattern)
        for name, document in schema_documents().items()
        for location, pattern in patterns(document, name)
        if pattern.endswith("$")
    }
)


def test_the_schemas_have_anchored_patterns_to_check() -> None:
    assert len(ANCHORED) >= 5


@pytest.mark.parametrize("location,pattern", ANCHORED, ids=[location for location, _ in ANCHORED])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_trailing_newline_breaks_every_anchored_pattern(location: str, pattern: str, data: Any) -> None:
    schema = {"type": "string", "pattern": pattern}
    text = data.draw(st.from_regex(pattern, fullmatch=True).filter(lambda s: not s.endswith("\n")))
    assert re.search(pattern, text + "\n"), "Python's dialect accepts it: the case is meaningful"
    assert not list(EcmaValidator(schema).iter_errors(text)), f"{location}: {text!r} should match"
    assert list(EcmaValidator(schema).iter_errors(text + "\n")), f"{location}: {text + chr(10)!r} matched"


def test_pattern_properties_mean_the_same_in_both_dialects() -> None:
    """patternProperties still go through Python's re: hold them to the vendor prefix, where the
    dialects agree."""
    keys = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            keys.update(node.get("patternProperties", {}))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(list(schema_documents().values()))
    assert keys == {"^x-"}


NEWLINE_EVENTS = [
    {"type": "text_delta", "seq": 1, "run_id": "run_1\n", "delta": "x"},
    {"type": "pong", "seq": 1, "id": "p1\n"},
    {"type": "error", "seq": 1, "code": "x-acme\n", "message": "m", "retryable": False},
]


@pytest.mark.parametrize("event", NEWLINE_EVENTS, ids=lambda e: e["type"])
def test_server_events_with_a_trailing_newline_in_an_identifier_are_violations(event: dict[str, Any]) -> None:
    assert check_server_event(event)
    # through the entry schema too: its $ref into the type's document keeps the ECMA dialect
    assert list(validator("server-event").iter_errors(event))


def test_a_client_message_id_with_a_trailing_newline_is_invalid() -> None:
    assert check_client_message({"type": "ping", "id": "p1\n"})
    assert list(validator("client-message").iter_errors({"type": "ping", "id": "p1\n"}))


def session_with(**changes: Any) -> dict[str, Any]:
    event = session_event("1.1", "ses_0123456789abcdef01234567", "conv_1", replay_window=512)
    event.update(changes)
    return event


@pytest.mark.parametrize(
    "changes",
    [
        {"protocol_version": "1.1\n"},
        {"session_id": "ses_0123456789abcdef01234567\n"},
        {"capabilities": ["x-acme\n"]},
    ],
    ids=["protocol_version", "session_id", "capability"],
)
def test_the_oracle_flags_a_session_with_a_trailing_newline(changes: dict[str, Any]) -> None:
    oracle = Oracle()
    oracle.feed_text(json.dumps(session_with(**changes)))
    assert [v.requirement for v in oracle.violations] == ["ASP-ENV-001"]


def test_asp_spec_validate_flags_a_run_id_with_a_trailing_newline() -> None:
    events = [
        session_with(),
        {
            "type": "run_started",
            "seq": 2,
            "run_id": "run_1\n",
            "message_id": "m1",
            "conversation_id": "conv_1",
        },
    ]
    result = subprocess.run(
        [sys.executable, "-m", "asp_cli.main", "spec", "validate", "-"],
        input="\n".join(json.dumps(e) for e in events) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ASP-ENV-001" in result.stdout and "run_id" in result.stdout
