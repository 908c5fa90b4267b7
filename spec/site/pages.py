"""What each page of the spec site shows, read from the spec files (view models for the templates).

Nothing here is written by hand about the protocol: message types and their members come from
spec/schema, examples from spec/examples, requirements from requirements.yaml, codes from
registry.yaml, the AsyncAPI reference from asyncapi.yaml, prose from PROTOCOL.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from spec import EXAMPLES_DIR, PROTOCOL_VERSION, SPEC_DIR
from spec.catalog import Requirement, parse_version, requirements
from spec.registry import capabilities, close_codes, error_codes, fixtures
from spec.resources import load_yaml, message_schema_names, schema_documents

DIRECTIONS = {"server": "server → client", "client": "client → server"}
VENDOR_SCHEMA = "server-event"
DEFINITIONS_DOCUMENT = "common"
CODE_FILES = {
    "requirements.yaml": "requirements.html",
    "registry.yaml": "registries.html",
    "asyncapi.yaml": "asyncapi.html",
    "CHANGELOG.md": "changelog.html",
    "lifecycle.yaml": "lifecycle.yaml",
    "schema/*.json": "messages/index.html",
}


# --- links ---------------------------------------------------------------------------------------


def message_href(name: str, root: str = "") -> str:
    return f"{root}messages/{name}.html"


def error_href(code: str, root: str = "") -> str:
    return f"{root}registries.html#error-{code}"


def capability_href(name: str, root: str = "") -> str:
    return f"{root}registries.html#capability-{name}"


def definition_href(name: str, root: str = "") -> str:
    return f"{root}messages/index.html#def-{name}"


def code_links(root: str = "") -> dict[str, str]:
    """Code-span text the prose may link: message types, error codes, entry schemas, spec files."""
    links = {name: f"{root}schema/{name}.json" for name in ("server-event", "client-message")}
    links.update({f"{name}.json": f"{root}schema/{name}.json" for name in schema_documents()})
    links.update({name: f"{root}{href}" for name, href in CODE_FILES.items()})
    links.update({code: error_href(code, root) for code in error_codes()})
    links.update({name: message_href(name, root) for name in message_types()})
    return links


def capability_links(root: str = "") -> dict[str, str]:
    return {name: capability_href(name, root) for name in capabilities()}


# --- schema description ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fragment:
    """A piece of a type description: code (a literal, a pattern) or text; href links it to a definition."""

    text: str
    href: str | None = None
    code: bool = False


@dataclass(frozen=True)
class Member:
    name: str
    required: bool
    type: tuple[Fragment, ...]
    description: str
    depth: int = 0


def describe(node: Any, root: str = "") -> tuple[Fragment, ...]:
    """A JSON Schema node as readable fragments: `integer, ≥ 1`, `one of "stop", ...`, a definition link."""
    if node is True or node == {}:
        return (Fragment("any JSON value"),)
    if not isinstance(node, dict):
        return (Fragment(json.dumps(node), code=True),)
    if "$ref" in node:
        name = str(node["$ref"]).rsplit("/", 1)[-1].removesuffix(".json")
        return (Fragment(name, definition_href(name, root), code=True),)
    if "const" in node:
        return (Fragment(json.dumps(node["const"], ensure_ascii=False), code=True),)
    if "enum" in node:
        values = [Fragment(json.dumps(v, ensure_ascii=False), code=True) for v in node["enum"]]
        return (Fragment("one of "), *_joined(values, ", "))
    for combinator in ("oneOf", "anyOf"):
        if combinator in node:
            branches = [
                (Fragment(branch["title"]),)
                if isinstance(branch, dict) and "title" in branch
                else describe(branch, root)
                for branch in node[combinator]
            ]
            return tuple(_joined(branches, " or ", flatten=True))
    kind = node.get("type", "any JSON value")
    text = " or ".join(kind) if isinstance(kind, list) else str(kind)
    if kind == "array" and "items" in node:
        return (Fragment("array of "), *describe(node["items"], root), *_constraints(node))
    return (Fragment(text), *_constraints(node))


def _joined(items: list[Any], separator: str, *, flatten: bool = False) -> list[Fragment]:
    joined: list[Fragment] = []
    for position, item in enumerate(items):
        if position:
            joined.append(Fragment(separator))
        joined.extend(item if flatten else (item,))
    return joined


def _plural(count: Any, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _constraints(node: Mapping[str, Any]) -> list[Fragment]:
    said = {
        "minimum": f"≥ {node.get('minimum')}",
        "maximum": f"≤ {node.get('maximum')}",
        "minLength": f"at least {_plural(node.get('minLength'), 'character')}",
        "maxLength": f"at most {_plural(node.get('maxLength'), 'character')}",
        "minItems": f"at least {_plural(node.get('minItems'), 'item')}",
    }
    found = [Fragment(", " + text) for key, text in said.items() if key in node]
    if node.get("uniqueItems"):
        found.append(Fragment(", no duplicates"))
    if "pattern" in node:
        found.extend((Fragment(", matching "), Fragment(str(node["pattern"]), code=True)))
    return found


def members(schema: Mapping[str, Any], root: str = "", depth: int = 0) -> list[Member]:
    """The members of an object schema, nested objects' members after their parent (dotted names)."""
    required = set(schema.get("required", ()))
    rows = []
    for name, node in schema.get("properties", {}).items():
        description = node.get("description", "") if isinstance(node, dict) else ""
        if not description and isinstance(node, dict) and "$ref" in node:
            description = _definition(str(node["$ref"])).get("description", "")
        rows.append(Member(name, name in required, describe(node, root), description, depth))
        if isinstance(node, dict) and node.get("type") == "object" and "properties" in node:
            rows.extend(
                Member(f"{name}.{child.name}", child.required, child.type, child.description, child.depth)
                for child in members(node, root, depth + 1)
            )
    return rows


def _definition(ref: str) -> dict[str, Any]:
    document, _, pointer = ref.partition("#")
    target = schema_documents()[document.removesuffix(".json") or DEFINITIONS_DOCUMENT]
    for part in pointer.strip("/").split("/") if pointer else ():
        target = target[part]
    return dict(target)


@dataclass(frozen=True)
class Definition:
    name: str
    type: tuple[Fragment, ...]
    description: str
    members: tuple[Member, ...]
    branches: tuple[tuple[str, tuple[Member, ...]], ...]


def definitions(root: str = "") -> list[Definition]:
    """The shared definitions of common.json, each with its members or its alternatives' members."""
    found = []
    for name, node in schema_documents()[DEFINITIONS_DOCUMENT].get("$defs", {}).items():
        branches = tuple(
            (str(branch.get("title", f"form {n}")), tuple(members(branch, root)))
            for n, branch in enumerate(node.get("oneOf", ()), start=1)
            if isinstance(branch, dict) and "properties" in branch
        )
        found.append(
            Definition(
                name=name,
                type=describe({k: v for k, v in node.items() if k != "description"}, root),
                description=node.get("description", ""),
                members=tuple(members(node, root)),
                branches=branches,
            )
        )
    return found


# --- examples ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One example frame and the schema it must (valid) or must not (invalid) satisfy."""

    file: str
    schema: str
    text: str
    valid: bool
    note: str = ""
    source: str = "spec/examples"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


@cache
def examples() -> tuple[Example, ...]:
    """Every example of spec/examples/valid and spec/examples/invalid, with the schema it is held to."""
    found = []
    for path in sorted((EXAMPLES_DIR / "valid").glob("*.json")):
        prefix = path.name.split(".", 1)[0]
        schema = prefix if prefix in message_types() else VENDOR_SCHEMA
        found.append(Example(path.name, schema, _pretty(_load(path)), valid=True))
    expected = load_yaml("examples/invalid/expected.yaml")
    for path in sorted((EXAMPLES_DIR / "invalid").glob("*.json")):
        why = expected.get(path.name, {})
        note = f"{why.get('breaks', '')} ({why.get('keyword', '?')} at {why.get('pointer') or '/'})"
        found.append(Example(path.name, str(why.get("schema", "")), _pretty(_load(path)), False, note))
    return tuple(found)


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def schema_for(frame: Mapping[str, Any], direction: str) -> str:
    """The schema a frame of a diagram is held to: its type's, or the entry schema of its direction
    (vendor `x-` events are judged by server-event.json)."""
    kind = frame.get("type")
    return str(kind) if kind in message_types() else ENTRY_SCHEMAS[direction]


def examples_for(schema: str) -> list[Example]:
    return [example for example in examples() if example.schema == schema]


# --- message types -------------------------------------------------------------------------------


ENTRY_SCHEMAS = {"server": "server-event", "client": "client-message"}


@cache
def message_types() -> tuple[str, ...]:
    """Server event types, then client message types, each in the order their entry schema lists them."""
    ordered: list[str] = []
    for direction, entry in ENTRY_SCHEMAS.items():
        names = message_schema_names(direction)
        listed = [name for name in _type_enum(schema_documents()[entry]) if name in names]
        ordered.extend(listed + sorted(set(names) - set(listed)))
    return tuple(ordered)


def _type_enum(entry: Mapping[str, Any]) -> list[str]:
    """The `type` values an entry schema (server-event, client-message) enumerates."""
    node = entry.get("properties", {}).get("type", {})
    for branch in [node, *node.get("anyOf", ()), *node.get("oneOf", ())]:
        if isinstance(branch, dict) and "enum" in branch:
            return [str(value) for value in branch["enum"]]
    return []


@dataclass(frozen=True)
class MessageType:
    name: str
    direction: str
    summary: str
    capability: str | None
    members: tuple[Member, ...]
    schema_text: str
    valid: tuple[Example, ...]
    invalid: tuple[Example, ...]
    requirements: tuple[Requirement, ...]


def message_type(name: str, mentions: Mapping[str, frozenset[str]], root: str = "") -> MessageType:
    """One message type: its members, schema, examples and the requirements whose prose names it."""
    schema = schema_documents()[name]
    own = examples_for(name)
    cited = [row for row in catalog() if name in mentions.get(row.id, frozenset())]
    return MessageType(
        name=name,
        direction=DIRECTIONS[schema["x-asp-direction"]],
        summary=str(schema.get("description", "")),
        capability=schema.get("x-asp-capability"),
        members=tuple(members(schema, root)),
        schema_text=_pretty(schema),
        valid=tuple(e for e in own if e.valid),
        invalid=tuple(e for e in own if not e.valid),
        requirements=tuple(cited),
    )


# --- requirements catalog ------------------------------------------------------------------------


def catalog() -> tuple[Requirement, ...]:
    """The requirements in catalog order (each with its `since`, 1.0 unless the catalog says)."""
    return tuple(requirements().values())


def facets(rows: Iterable[Requirement]) -> dict[str, list[str]]:
    """The values each filter of the catalog table offers, in first-seen order."""
    values: dict[str, list[str]] = {"level": [], "section": [], "binds": [], "method": [], "since": []}
    for row in rows:
        for key, seen in values.items():
            value = getattr(row, key)
            if value not in seen:
                seen.append(value)
    values["since"].sort(key=parse_version)
    return values


# --- registries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registries:
    error_codes: tuple[tuple[str, Mapping[str, Any]], ...]
    error_extra: tuple[str, ...]
    close_codes: tuple[Any, ...]
    capabilities: tuple[tuple[str, str], ...]
    fixtures: tuple[tuple[str, Mapping[str, Any]], ...]


ERROR_COLUMNS = ("retryable", "meaning", "requirement")


def registries() -> Registries:
    """registry.yaml as tables; members an error code has beyond the known ones become extra columns."""
    codes = tuple(error_codes().items())
    extra: list[str] = []
    for _, entry in codes:
        extra.extend(key for key in entry if key not in ERROR_COLUMNS and key not in extra)
    return Registries(
        error_codes=codes,
        error_extra=tuple(extra),
        close_codes=tuple(close_codes().values()),
        capabilities=tuple(capabilities().items()),
        fixtures=tuple(fixtures().items()),
    )


def fixture_anchor(name: str) -> str:
    return "fixture-" + name.removeprefix("asp-fixture:").split(" ", 1)[0]


# --- AsyncAPI ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AsyncMessage:
    key: str
    document: Mapping[str, Any]
    schema_ref: str
    schema_name: str | None
    schema_text: str
    examples: tuple[Example, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class AsyncApi:
    document: Mapping[str, Any]
    messages: tuple[AsyncMessage, ...]


def asyncapi() -> AsyncApi:
    """asyncapi.yaml with each message's payload schema resolved (relative to spec/, as the document's
    `$ref`s are) and its examples: the document's own, then the valid spec/examples of its type that
    are not already among them."""
    document = load_yaml("asyncapi.yaml")
    found = []
    for key, message in document.get("components", {}).get("messages", {}).items():
        ref = str(message.get("payload", {}).get("schema", {}).get("$ref", ""))
        path = (SPEC_DIR / ref).resolve() if ref and not ref.startswith("#") else None
        name = path.stem if path and path.is_file() and path.stem in schema_documents() else None
        own = [
            Example(
                file=str(example.get("name", f"example {number}")),
                schema=name or "",
                text=_pretty(example["payload"]),
                valid=True,
                note=str(example.get("summary", "")),
                source="asyncapi.yaml",
            )
            for number, example in enumerate(message.get("examples", ()), start=1)
            if isinstance(example, dict) and "payload" in example
        ]
        payloads = [json.loads(example.text) for example in own]
        more = [e for e in examples_for(name or "") if e.valid and json.loads(e.text) not in payloads]
        found.append(
            AsyncMessage(
                key=key,
                document=message,
                schema_ref=ref,
                schema_name=name,
                schema_text=_pretty(schema_documents()[name]) if name else "",
                examples=tuple(own + more),
            )
        )
    return AsyncApi(document=document, messages=tuple(found))


def protocol_version() -> str:
    return PROTOCOL_VERSION
