"""Validation of ASP messages against spec/schema (JSON Schema draft 2020-12).

Per-type validators give precise errors; the entry schemas (server-event.json,
client-message.json) dispatch on `type` the same way, which the spec tests prove.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
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
def schema_registry() -> Registry[Any]:
    resources = [
        (document["$id"], Resource.from_contents(document, default_specification=DRAFT202012))
        for document in schema_documents().values()
    ]
    return Registry().with_resources(resources)


@cache
def validator(name: str) -> Draft202012Validator:
    """The validator of one schema file (`text_delta`, `server-event`, `message`, ...)."""
    return Draft202012Validator(schema_documents()[name], registry=schema_registry())


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
