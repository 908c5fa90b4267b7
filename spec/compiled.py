"""Schemas compiled to plain Python predicates, for the hot path of a server reading client frames.

`jsonschema` takes about 90 us to check one small client message (a ping); a server answering
thousands of pings a second spends a large share of its CPU there. `compiled(name)` turns a schema
file of `spec/schema` into a predicate that says, in about a microsecond, that an instance is
valid. It is only ever trusted one way: True means the schema holds; False means "ask jsonschema"
(`spec.schemas`), which gives the verdict and the problems. So the predicate may be stricter than
the schema (it rejects `1.0` as an integer, for example), never looser.

Only a known subset of draft 2020-12 is compiled: `type`, `const`, `enum`, `properties`,
`required`, `additionalProperties` (a boolean), `patternProperties` (to boolean schemas),
`minLength`, `maxLength`, `minimum`, `maximum`, `pattern` (ECMA-262, as `spec.schemas` matches it)
and `$ref` within the schema files; annotations are ignored. A schema using anything else is not
compiled (`compiled` returns None) and every instance goes to jsonschema.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from spec.resources import schema_documents
from spec.schemas import ecma_search

Check = Callable[[Any], bool]
ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "examples", "default", "deprecated"}
)
_TYPES: dict[str, Check] = {
    "object": lambda value: type(value) is dict,
    "string": lambda value: type(value) is str,
    "integer": lambda value: type(value) is int,
    "boolean": lambda value: type(value) is bool,
    "null": lambda value: value is None,
    "array": lambda value: type(value) is list,
    "number": lambda value: type(value) in (int, float),
}


class Unsupported(Exception):
    """The schema uses a keyword (or form) this compiler does not know: no fast path for it."""


@cache
def compiled(name: str) -> Check | None:
    """The predicate of schema file `name` ("ping", "message", ...), or None when not compilable."""
    try:
        return _compile(schema_documents()[name], name)
    except (Unsupported, RecursionError):  # a recursive $ref is not compiled either
        return None


def _resolve(ref: str, document: str) -> tuple[dict[str, Any], str]:
    target, _, pointer = ref.partition("#")
    name = target.removesuffix(".json") if target else document
    node: Any = schema_documents()[name]
    for part in pointer.strip("/").split("/") if pointer.strip("/") else []:
        node = node[part]
    if not isinstance(node, dict):
        raise Unsupported(ref)
    return node, name


def _compile(schema: Any, document: str) -> Check:
    if schema is True:
        return lambda value: True
    if not isinstance(schema, dict):
        raise Unsupported(repr(schema))
    checks: list[Check] = []
    for keyword, argument in schema.items():
        if keyword in ANNOTATIONS or keyword.startswith("x-"):
            continue
        checks.append(_keyword(keyword, argument, schema, document))
    if len(checks) == 1:
        return checks[0]
    return lambda value: all(check(value) for check in checks)


def _keyword(keyword: str, argument: Any, schema: dict[str, Any], document: str) -> Check:
    if keyword == "$ref":
        target, where = _resolve(argument, document)
        return _compile(target, where)
    if keyword == "type" and isinstance(argument, str) and argument in _TYPES:
        return _TYPES[argument]
    if keyword == "const" and (argument is None or type(argument) in (str, bool)):
        return lambda value: type(value) is type(argument) and value == argument
    if keyword == "enum" and all(type(item) is str for item in argument):
        allowed = frozenset(argument)
        return lambda value: type(value) is str and value in allowed
    if keyword == "required":
        names = tuple(argument)
        return lambda value: type(value) is not dict or all(name in value for name in names)
    if keyword in ("minLength", "maxLength") and type(argument) is int:
        if keyword == "minLength":
            return lambda value: type(value) is not str or len(value) >= argument
        return lambda value: type(value) is not str or len(value) <= argument
    if keyword in ("minimum", "maximum") and type(argument) is int:
        if keyword == "minimum":
            return lambda value: type(value) not in (int, float) or value >= argument
        return lambda value: type(value) not in (int, float) or value <= argument
    if keyword == "pattern" and isinstance(argument, str):
        return lambda value: type(value) is not str or ecma_search(argument, value)
    if keyword == "properties":
        members = {key: _compile(sub, document) for key, sub in argument.items()}
        return lambda value: (
            type(value) is not dict
            or all(check(value[key]) for key, check in members.items() if key in value)
        )
    if keyword == "patternProperties":
        if not all(sub is True for sub in argument.values()):
            raise Unsupported("patternProperties with a schema")
        return lambda value: True  # members matching them are allowed; additionalProperties asks
    if keyword == "additionalProperties" and isinstance(argument, bool):
        if argument:
            return lambda value: True
        declared = frozenset(schema.get("properties", {}))
        patterns = tuple(schema.get("patternProperties", {}))
        return lambda value: (
            type(value) is not dict
            or all(key in declared or any(ecma_search(pattern, key) for pattern in patterns) for key in value)
        )
    raise Unsupported(keyword)
