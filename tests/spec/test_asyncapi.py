"""spec/asyncapi.yaml is a valid AsyncAPI 3.0 document and every reference in it resolves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse
from urllib.request import url2pathname

import pytest
import yaml
from jsonschema import Draft7Validator

from spec import SPEC_DIR
from spec.resources import message_schema_names, schema_documents
from spec.schemas import check_client_message, check_server_event, schema_registry

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


def test_every_message_carries_the_valid_examples_of_spec_examples() -> None:
    valid = SPEC_DIR / "examples" / "valid"
    for name, message in DOCUMENT["components"]["messages"].items():
        files = {path.stem for path in valid.glob("*.json") if path.name.split(".")[0] == name}
        examples = message.get("examples", [])
        assert {example["name"] for example in examples} == files, name
        for example in examples:
            assert example["payload"] == json.loads((valid / f"{example['name']}.json").read_text())
            problems = check_client_message if name in message_schema_names("client") else check_server_event
            assert problems(example["payload"]) == [], example["name"]


def test_every_reference_resolves_by_file_location_from_outside_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tool that follows `$ref`s relative to the files, from any working directory and without
    the schemas' `$id` host, finds every document and every pointer."""
    monkeypatch.chdir(tmp_path)
    base = (SPEC_DIR / "asyncapi.yaml").as_uri()
    for ref in refs(DOCUMENT):
        target, _, pointer = urljoin(base, ref).partition("#")
        if target == base:
            resolve_pointer(DOCUMENT, pointer)
            continue
        path = Path(url2pathname(urlparse(target).path))
        assert path.is_file(), ref
        schema = json.loads(path.read_text())
        for inner in refs(schema):
            inner_target, _, inner_pointer = urljoin(path.as_uri(), inner).partition("#")
            inner_path = Path(url2pathname(urlparse(inner_target).path))
            assert inner_path.is_file(), (ref, inner)
            if inner_pointer:
                resolve_pointer(json.loads(inner_path.read_text()), inner_pointer)
