"""The wire form (a total encoder) and events within max_event_bytes (ASP-LIM-011)."""

from __future__ import annotations

import json
import math

import pytest

from reference_server.protocol.jsontext import NotJson, OutOfRange, loads_top_level
from reference_server.protocol.sizing import fit, fit_history, size_of
from reference_server.protocol.wire import encode, json_safe

MAX = 65_536

UNENCODABLE = [
    ("an integer beyond 64 bits (defect 11: what is 2**64)", 2**64, 2**64),
    ("a negative one", -(2**70), -(2**70)),
    ("an integer of 5000 digits", 10**5000, None),
    ("NaN", math.nan, None),
    ("Infinity", math.inf, None),
    ("-Infinity", -math.inf, None),
    ("bytes", b"\x00\xff", "b'\\x00\\xff'"),
    ("a set", {1}, "{1}"),
    ("a lone surrogate", "a\ud800b", "a\ufffd\ufffd\ufffdb"),
    ("a non-string key", {1: "x"}, {"1": "x"}),
]


@pytest.mark.parametrize(
    "value,expected", [(v, e) for _, v, e in UNENCODABLE], ids=[n for n, _, _ in UNENCODABLE]
)
def test_every_value_has_a_wire_form_and_encode_never_raises(value: object, expected: object):
    text = encode({"type": "tool_result", "content": value})
    assert json.loads(text)["content"] == expected


def test_nesting_deeper_than_the_encoders_go_is_cut_not_raised():
    deep: object = "bottom"
    for _ in range(2000):
        deep = [deep]
    text = encode({"type": "tool_result", "content": deep})
    assert json.loads(text)["type"] == "tool_result"
    assert json_safe(deep) is not None


@pytest.mark.parametrize(
    "event",
    [
        {"type": "text_delta", "run_id": "r", "delta": "a" * 200_000},
        {"type": "text_delta", "run_id": "r", "delta": "\u00e9\U0001f600\n\x01" * 40_000},  # escapes, 4-byte
        {"type": "reasoning_delta", "run_id": "r", "delta": "x" * 70_000},
    ],
)
def test_deltas_are_split_never_truncated(event: dict):
    pieces = fit(event, MAX)
    assert len(pieces) > 1 and all(size_of(p) <= MAX for p in pieces)
    assert "".join(p["delta"] for p in pieces) == event["delta"]
    assert all(p.keys() == event.keys() for p in pieces)


def test_a_tool_call_too_large_loses_its_arguments():
    event = {
        "type": "tool_call",
        "run_id": "r",
        "tool_call_id": "c",
        "name": "t",
        "arguments": {"a": "x" * MAX},
    }
    (fitted,) = fit(event, MAX)
    assert fitted["arguments"] == {} and fitted["truncated"] is True and size_of(fitted) <= MAX


@pytest.mark.parametrize("content", ["y" * 100_000, {"rows": ["z" * 1000] * 100}, [2**70] * 10_000])
def test_a_tool_result_too_large_becomes_a_string_prefix(content: object):
    event = {"type": "tool_result", "run_id": "r", "tool_call_id": "c", "content": content, "is_error": False}
    (fitted,) = fit(event, MAX)
    assert fitted["truncated"] is True and isinstance(fitted["content"], str)
    assert size_of(fitted) <= MAX and len(fitted["content"]) > MAX // 2
    whole = content if isinstance(content, str) else json.dumps(content, separators=(",", ":"))
    assert whole.startswith(fitted["content"])


def entry(role: str, size: int, number: int) -> dict:
    return {"role": role, "content": f"{number}:" + "w" * size, "run_id": f"run_{number}"}


def test_history_keeps_the_newest_entries_that_fit_and_says_how_many_it_left_out():
    entries = [entry("user" if n % 2 == 0 else "assistant", 10_000, n) for n in range(20)]
    fitted = fit_history({"type": "history", "conversation_id": "c", "messages": entries}, MAX)
    kept = fitted["messages"]
    assert size_of(fitted) <= MAX
    assert kept == entries[-len(kept) :] and 0 < len(kept) < 20
    assert fitted["truncated"] is True and fitted["omitted"] == 20 - len(kept)


def test_defect_15_an_entry_too_large_alone_is_shortened_keeping_its_beginning():
    huge = {"role": "assistant", "content": "t0 " * 500_000, "run_id": "run_1"}
    user = {"role": "user", "content": "go", "message_id": "m", "run_id": "run_1"}
    fitted = fit_history({"type": "history", "conversation_id": "c", "messages": [user, huge]}, MAX)
    (shortened,) = fitted["messages"]
    assert shortened["truncated"] is True and huge["content"].startswith(shortened["content"])
    assert len(shortened["content"]) > MAX // 2 and size_of(fitted) <= MAX
    assert (fitted["truncated"], fitted["omitted"]) == (True, 1)


def test_a_history_that_fits_is_left_alone():
    event = {"type": "history", "conversation_id": "c", "messages": [entry("user", 10, 1)]}
    assert fit(event, MAX) == [event]


@pytest.mark.parametrize(
    "text,expected",
    [
        ('{"a": [[1]], "b": {"c": {}}, "d": 2}', {"a": [], "b": {}, "d": 2}),
        ("[" * 3000 + "]" * 3000, [[]]),
        ('{"a":' + "[" * 3000 + '"x"' + "]" * 3000 + "}", {"a": []}),
        ('  {"a": 1}  ', {"a": 1}),
        # JSON orjson refuses: out-of-range scalars below the top level are dropped like any value
        ('{"a":' + "[" * 3000 + '"\\ud800"' + "]" * 3000 + "}", {"a": []}),
        ('{"a":' + "[" * 3000 + "1e999" + "]" * 3000 + "}", {"a": []}),
        ('{"a": [1e999999]}', {"a": []}),
    ],
)
def test_json_of_any_depth_is_read_without_recursion(text: str, expected: object):
    assert loads_top_level(text.encode()) == expected


@pytest.mark.parametrize(
    "text",
    [
        "[" * 3000 + "]" * 2999,  # unclosed
        "[" * 3000 + "]" * 3001,
        '{"a":' + "[" * 3000 + "]" * 3000 + "} x",
        '{"a":' + "[" * 3000 + "nul" + "]" * 3000 + "}",
        "",
    ],
)
def test_deep_text_that_is_not_json_is_refused_like_shallow_text(text: str):
    with pytest.raises(NotJson):
        loads_top_level(text.encode())


@pytest.mark.parametrize(
    "text,expected",
    [
        ('{"a": 1e999999}', {"a": OutOfRange("1e999999")}),
        ('{"a": -1e400, "b": 2}', {"a": OutOfRange("-1e400"), "b": 2}),
        ('{"a": ' + "9" * 400 + "}", {"a": OutOfRange("9" * 64)}),
        ('{"a": "\\ud800 lone"}', {"a": OutOfRange('"\\ud800 lone"')}),
        ('{"\\ud800": 1}', {"\ufffd": 1}),  # a member name with a lone surrogate names no member
        ("1e999999", OutOfRange("1e999999")),
    ],
)
def test_json_orjson_refuses_is_read_with_out_of_range_scalars(text: str, expected: object):
    """RFC 8259's grammar allows these; orjson has no value for them (they were invalid_json)."""
    assert loads_top_level(text.encode()) == expected


@pytest.mark.parametrize(
    "text", ["NaN", '{"a": NaN}', '{"a": Infinity}', '{"a": 01}', '{"a": "\\x"}', "{'a': 1}"]
)
def test_text_outside_the_json_grammar_is_still_not_json(text: str):
    with pytest.raises(NotJson):
        loads_top_level(text.encode())
