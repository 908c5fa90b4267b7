"""spec/asyncapi.yaml is a valid AsyncAPI 3.0 document and every reference in it resolves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator

from spec import SPEC_DIR
from spec.resources import message_schema_names, schema_documents
from spec.schemas import schema_registry

ASYNCAPI_SCHEMA = Path(__file__).resolve().parents[1] / "data" / "asyncapi-3.0.0.schema.json"
DOCUMENT: dict[str, Any] = yaml.safe_load((SPEC_DIR / "asyncapi.yaml").read_text())


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def resolve_pointer(document: Any, pointer: str) -> Any:
    node = document
    for part in pointer.lstrip("/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def test_document_validates_against_the_asyncapi_3_schema() -> None:
    validator = Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text()))
    errors = [f"{list(e.path)}: {e.message[:200]}" for e in validator.iter_errors(DOCUMENT)]
    assert errors == []


def test_the_validator_would_catch_a_broken_document() -> None:
    validator = Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text()))
    broken = json.loads(json.dumps(DOCUMENT))
    broken["operations"]["sendServerEvents"]["action"] = "publish"
    assert list(validator.iter_errors(broken))


def test_every_reference_resolves() -> None:
    for ref in refs(DOCUMENT):
        target, _, pointer = ref.partition("#")
        if target:
            path = (SPEC_DIR / target).resolve()
            assert path.is_file(), ref
            schema = json.loads(path.read_text())
            # the file's own references resolve through the schema registry
            resolver = schema_registry().resolver(base_uri=schema["$id"])
            for inner in refs(schema):
                resolver.lookup(inner)
            if pointer:
                resolve_pointer(schema, pointer)
        else:
            resolve_pointer(DOCUMENT, pointer)


def test_every_message_schema_is_described() -> None:
    described = {name for name in DOCUMENT["components"]["messages"]}
    assert described == set(message_schema_names("server")) | set(message_schema_names("client"))
    for name, message in DOCUMENT["components"]["messages"].items():
        assert message["payload"]["schema"]["$ref"] == f"./schema/{name}.json"
        assert name in schema_documents()
