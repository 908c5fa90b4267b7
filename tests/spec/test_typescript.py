"""The TypeScript declarations browsers type-check against are exactly what the schemas generate."""

from __future__ import annotations

import re
from pathlib import Path

from spec.resources import message_schema_names, schema_documents
from spec.typescript import generate

COMMITTED = Path(__file__).resolve().parents[2] / "reference_server" / "static" / "asp-messages.d.ts"


def test_the_committed_declarations_are_what_the_schemas_generate():
    assert COMMITTED.read_text() == generate(), "regenerate: python -m spec.typescript > " + str(
        COMMITTED.name
    )


def test_every_message_type_and_required_member_is_declared():
    text = generate()
    for direction, suffix in (("server", "Event"), ("client", "Message")):
        for name in message_schema_names(direction):
            type_name = "".join(p.capitalize() for p in name.split("_")) + suffix
            block = re.search(rf"export interface {type_name} \{{(.*?)\n\}}", text, re.S)
            assert block, type_name
            document = schema_documents()[name]
            for member in document["properties"]:
                optional = "" if member in document.get("required", []) else "?"
                assert re.search(rf"\n  {member}{re.escape(optional)}: ", block.group(1)), (type_name, member)
