"""Cached loading of the canonical spec files, so every consumer reads the same parsed copy."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import yaml

from spec import SCHEMA_DIR, SPEC_DIR


@cache
def load_yaml(name: str) -> Any:
    """Parse one YAML file of spec/ (requirements, registry, lifecycle)."""
    with (SPEC_DIR / name).open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@cache
def schema_documents() -> dict[str, dict[str, Any]]:
    """Every schema of spec/schema by file stem (`text_delta`, `server-event`, ...)."""
    documents: dict[str, dict[str, Any]] = {}
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        documents[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    return documents


def message_schema_names(direction: str) -> list[str]:
    """Message types of one direction ("server" or "client"), as declared by the schemas."""
    return [
        name for name, document in schema_documents().items() if document.get("x-asp-direction") == direction
    ]
