"""TypeScript declarations generated from spec/schema, so browser clients type-check against the spec.

`python -m spec.typescript > reference_server/static/asp-messages.d.ts`; a test fails when the
committed file differs from what the schemas generate.
"""

from __future__ import annotations

import sys
from typing import Any

from spec import PROTOCOL_VERSION
from spec.resources import message_schema_names, schema_documents

VENDOR_KEY = "[vendor: `x-${string}`]: unknown;"


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))


def _common_name(ref: str) -> str:
    return _pascal(ref.split("/")[-1])


def ts_type(schema: Any, indent: str = "") -> str:
    if schema is True or schema == {}:
        return "unknown"
    if "$ref" in schema:
        return _common_name(schema["$ref"])
    if "const" in schema:
        return _literal(schema["const"])
    if "enum" in schema:
        return " | ".join(_literal(v) for v in schema["enum"])
    for combinator in ("oneOf", "anyOf"):
        if combinator in schema:
            return " | ".join(ts_type(s, indent) for s in schema[combinator])
    kind = schema.get("type")
    if kind == "string":
        pattern = schema.get("pattern", "")
        return "`x-${string}`" if pattern.startswith("^x-") else "string"
    if kind == "integer" or kind == "number":
        return "number"
    if kind == "boolean":
        return "boolean"
    if kind == "array":
        return f"Array<{ts_type(schema.get('items', True), indent)}>"
    if kind == "object":
        if "properties" not in schema:
            return "Record<string, unknown>"
        return _object(schema, indent)
    return "unknown"


def _literal(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value).lower()


def _object(schema: dict[str, Any], indent: str) -> str:
    inner = indent + "  "
    required = set(schema.get("required", []))
    lines = ["{"]
    for name, prop in schema.get("properties", {}).items():
        description = prop.get("description") if isinstance(prop, dict) else None
        if description:
            lines.append(f"{inner}/** {description} */")
        optional = "" if name in required else "?"
        lines.append(f"{inner}{name}{optional}: {ts_type(prop, inner)};")
    if "patternProperties" in schema:
        lines.append(f"{inner}{VENDOR_KEY}")
    lines.append(f"{indent}}}")
    return "\n".join(lines)


def generate() -> str:
    documents = schema_documents()
    out = [
        f"// ASP {PROTOCOL_VERSION} message types, generated from spec/schema"
        " by `python -m spec.typescript`.",
        "// Do not edit: regenerate. tests/spec/test_typescript.py fails when this file drifts.",
        "",
    ]
    for name, definition in documents["common"]["$defs"].items():
        description = definition.get("description")
        if description:
            out.append(f"/** {description} */")
        out.append(f"export type {_pascal(name)} = {ts_type(definition)};")
        out.append("")
    unions: dict[str, list[str]] = {"server": [], "client": []}
    for direction in ("server", "client"):
        suffix = "Event" if direction == "server" else "Message"
        for name in message_schema_names(direction):
            document = documents[name]
            type_name = _pascal(name) + suffix
            unions[direction].append(type_name)
            out.append(f"/** {document['description']} */")
            out.append(f"export interface {type_name} {_object(document, '')}")
            out.append("")
    out.append("/** Any server event; `x-` types are vendor events (ASP-EXT-001). */")
    out.append("export type ServerEvent =\n  | " + "\n  | ".join(unions["server"]) + ";")
    out.append("")
    out.append("/** Any client message. */")
    out.append("export type ClientMessage =\n  | " + "\n  | ".join(unions["client"]) + ";")
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(generate())
