"""Deep JSON is refused before the parser recurses (CPython 3.11, gh-106905)."""

from __future__ import annotations

import ast
import json

import pytest

from spec import jsondepth


def test_nesting_is_measured_outside_strings():
    assert jsondepth.nesting_depth("[" * 500 + "]" * 500) == jsondepth.MAX_DEPTH
    assert jsondepth.nesting_depth(json.dumps({"a": "[" * 5000})) == 1
    assert jsondepth.nesting_depth('[["\\"[[[", {"b": [1]}]]' + " " * 0, stop_at=3) == 3


@pytest.mark.parametrize("depth", [jsondepth.MAX_DEPTH, 100_000])
def test_deep_json_is_refused_and_later_parsing_of_python_still_works(depth: int):
    with pytest.raises(jsondepth.NestedTooDeep):
        jsondepth.loads("[" * depth + "]" * depth)
    with pytest.raises(RecursionError):  # what callers catch for "too deep to judge"
        jsondepth.loads(b"{" + b'"a":{' * depth + b"}" * (depth + 1))
    ast.parse("def f():\n    return [[[[1]]]]\n" * 50)  # the bug this avoids broke exactly this


def test_ordinary_json_and_errors_are_json_loads_own():
    assert jsondepth.loads('{"a": [1, 2, {"b": "]]]"}]}') == {"a": [1, 2, {"b": "]]]"}]}
    with pytest.raises(ValueError):
        jsondepth.loads("{not json")
