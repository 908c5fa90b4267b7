"""Validation of ASP messages against spec/schema (JSON Schema draft 2020-12).

Per-type validators give precise errors; the entry schemas (server-event.json,
client-message.json) dispatch on `type` the same way, which the spec tests prove.

`pattern` is enforced in the dialect JSON Schema names, ECMA-262 (with the `u` flag), through the
`regress` engine: Python's `re.search` would let `$` match before a final newline and accept
`"run_1\n"` as an identifier.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import regress
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from spec.resources import message_schema_names, schema_documents

VENDOR_PREFIX = "x-"


@dataclass(frozen=True)
class SchemaProblem:
    """One way a message breaks its schema: where (a JSON pointer) and what."""

    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


@cache
def ecma_regex(pattern: str) -> regress.Regex:
    """A JSON Schema `pattern` compiled as ECMA-262 (unicode mode). Raises regress.RegressError
    for a pattern that is not valid ECMA-262."""
    return regress.Regex(pattern, "u")


def ecma_search(pattern: str, text: str) -> bool:
    """Whether `pattern` matches anywhere in `text`, as ECMA-262 `RegExp.prototype.test` decides.

    A lone surrogate (JSON allows `"\ud800"`) cannot cross into the engine; it is searched as
    U+FFFD, which no class of the spec's patterns admits either.
    """
    try:
        return ecma_regex(pattern).find(text) is not None
    except UnicodeEncodeError:
        cleaned = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
        return ecma_regex(pattern).find(cleaned) is not None


def _ecma_pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not ecma_search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


EcmaValidator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


@cache
def _undeclared(name: str) -> dict[str, Any]:
    """A schema document without its `$schema`: jsonschema picks the validator class of a referenced
    document by its `$schema`, which would swap the ECMA pattern back out behind every `$ref`
    (server-event.json -> text_delta.json). Undeclared, every document is validated by the class
    that started, and the registry still reads it as draft 2020-12."""
    return {key: value for key, value in schema_documents()[name].items() if key != "$schema"}


@cache
def schema_registry() -> Registry[Any]:
    resources = [
        (
            _undeclared(name)["$id"],
            Resource.from_contents(_undeclared(name), default_specification=DRAFT202012),
        )
        for name in schema_documents()
    ]
    return Registry().with_resources(resources)


@cache
def validator(name: str) -> Draft202012Validator:
    """The validator of one schema file (`text_delta`, `server-event`, `message`, ...), with
    `pattern` in the ECMA-262 dialect."""
    checker: Draft202012Validator = EcmaValidator(_undeclared(name), registry=schema_registry())
    return checker


@cache
def server_event_types() -> frozenset[str]:
    return frozenset(message_schema_names("server"))


@cache
def client_message_types() -> frozenset[str]:
    return frozenset(message_schema_names("client"))


def _problems(errors: list[ValidationError]) -> list[SchemaProblem]:
    problems = []
    for error in sorted(errors, key=lambda e: list(e.absolute_path)):
        pointer = "".join(f"/{part}" for part in error.absolute_path)
        problems.append(SchemaProblem(pointer, _short(error)))
    return problems


def _short(error: ValidationError) -> str:
    text = str(error.message)
    return text if len(text) <= 200 else text[:197] + "..."


def check_server_event(event: Any) -> list[SchemaProblem]:
    """Schema problems of one server event (empty when valid)."""
    if not isinstance(event, dict):
        return [SchemaProblem("", "an event must be a JSON object")]
    kind = event.get("type")
    if isinstance(kind, str) and kind in server_event_types():
        return _problems(list(validator(kind).iter_errors(event)))
    return _problems(list(validator("server-event").iter_errors(event)))


def check_client_message(message: Any) -> list[SchemaProblem]:
    """Schema problems of one client message (empty when valid)."""
    if not isinstance(message, dict):
        return [SchemaProblem("", "a message must be a JSON object")]
    kind = message.get("type")
    if isinstance(kind, str) and kind in client_message_types():
        return _problems(list(validator(kind).iter_errors(message)))
    return _problems(list(validator("client-message").iter_errors(message)))


def is_vendor_type(kind: object) -> bool:
    return isinstance(kind, str) and kind.startswith(VENDOR_PREFIX)


def is_identifier(value: object) -> bool:
    """Whether `value` is a valid ASP identifier (schema `common.json#/$defs/identifier`): the ids
    of client messages that errors may echo (ASP-ERR-006, ASP-ERR-012)."""
    pattern = schema_documents()["common"]["$defs"]["identifier"]["pattern"]
    return isinstance(value, str) and ecma_search(pattern, value)
