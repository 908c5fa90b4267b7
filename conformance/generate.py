"""Generated client input: valid messages from the schemas, invalid ones by mutating them.

hypothesis-jsonschema draws valid messages (it only makes valid data); the mutation operators
make invalid ones in the manner of Schemathesis (drop a required member, change a type, break a
constraint, add an unknown member, unknown type, non-JSON, non-object, binary). Each generated
input carries the answer the spec prescribes for it, so a checker knows what to expect.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from spec.resources import schema_documents


@dataclass(frozen=True)
class Probe:
    """One generated frame and the error code it must get ('' for a valid message)."""

    frame: str | bytes
    expected_code: str
    mutation: str

    def describe(self) -> str:
        shown = self.frame if isinstance(self.frame, str) else f"<binary {self.frame!r}>"
        return f"{self.mutation}: {shown[:200]}"


@cache
def inlined(name: str) -> dict[str, Any]:
    """A message schema with every reference into common.json inlined (hypothesis-jsonschema needs that)."""
    common = schema_documents()["common"]["$defs"]

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and "#/$defs/" in ref:
                target = resolve(copy.deepcopy(common[ref.split("#/$defs/")[1]]))
                rest = {k: resolve(v) for k, v in node.items() if k != "$ref"}
                return {**target, **rest}
            return {k: resolve(v) for k, v in node.items() if k not in ("$id", "$schema")}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    schema = resolve(copy.deepcopy(schema_documents()[name]))
    schema.pop("patternProperties", None)  # vendor members are allowed, but not worth generating
    return {k: v for k, v in schema.items() if not k.startswith("x-")}


def draw(strategy: st.SearchStrategy[Any], count: int, random_seed: int) -> list[Any]:
    """`count` examples of a strategy, reproducibly for a seed, outside any test."""
    drawn: list[Any] = []

    @seed(random_seed)
    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn[:count]


def _wrong_type(value: Any) -> Any:
    return 12345 if isinstance(value, str) else "not-the-right-type"


def mutations(message: dict[str, Any], name: str) -> list[Probe]:
    """Invalid variants of one valid message, each with the code the spec prescribes."""
    schema = schema_documents()[name]
    required = [k for k in schema.get("required", []) if k != "type"]
    probes: list[Probe] = []
    for member in required:
        broken = {k: v for k, v in message.items() if k != member}
        probes.append(Probe(json.dumps(broken), "invalid_message", f"{name}: required {member} dropped"))
    for member, value in message.items():
        if member == "type":
            continue
        probes.append(
            Probe(
                json.dumps({**message, member: _wrong_type(value)}),
                "invalid_message",
                f"{name}: {member} of the wrong type",
            )
        )
    if name == "resume":
        probes.append(
            Probe(json.dumps({**message, "last_seq": -1}), "invalid_message", "resume: last_seq below 0")
        )
    probes.append(
        Probe(
            json.dumps({**message, "id": "has spaces and / slashes"}),
            "invalid_message",
            f"{name}: id breaks its pattern",
        )
    )
    probes.append(
        Probe(json.dumps({**message, "unknown_member": True}), "invalid_message", f"{name}: unknown member")
    )
    probes.append(
        Probe(json.dumps({**message, "type": name + "_v2"}), "unknown_type", f"{name}: unknown type")
    )
    probes.append(
        Probe(
            json.dumps({k: v for k, v in message.items() if k != "type"}),
            "unknown_type",
            f"{name}: type missing",
        )
    )
    text = json.dumps(message)
    probes.append(Probe(text[: max(1, len(text) // 2)], "invalid_json", f"{name}: truncated JSON"))
    return probes


GENERIC = [
    Probe("[]", "invalid_json", "a JSON array"),
    Probe("42", "invalid_json", "a JSON number"),
    Probe('"ping"', "invalid_json", "a JSON string"),
    Probe("null", "invalid_json", "JSON null"),
    Probe("{'type': 'ping'}", "invalid_json", "single-quoted pseudo-JSON"),
    Probe(b"\x00\x01\x02", "unsupported_frame", "a binary frame"),
    Probe('{"type": "ping"', "invalid_json", "an unclosed object"),
]

# Client message types whose valid instances are safe to send anywhere (a message would start a run).
SAFE_VALID = ("ping", "cancel")
MUTATED = ("message", "cancel", "ping", "resume")


@cache
def invalid_probes(count: int, random_seed: int = 1) -> tuple[Probe, ...]:
    """`count` invalid frames: generic ones plus mutations of generated valid messages (cached:
    generating them costs CPU time no held connection should wait through)."""
    probes = list(GENERIC)
    per_type = max(1, count // (len(MUTATED) * 4))
    for offset, name in enumerate(MUTATED):
        for message in draw(from_schema(inlined(name)), per_type, random_seed + offset):
            probes.extend(mutations(message, name))
    return tuple(_spread(probes, count))


@cache
def valid_probes(count: int, random_seed: int = 1) -> tuple[tuple[str, dict[str, Any]], ...]:
    """Valid ping and cancel messages, as generated from their schemas (cached)."""
    per_type = max(1, count // len(SAFE_VALID))
    drawn: list[tuple[str, dict[str, Any]]] = []
    for offset, name in enumerate(SAFE_VALID):
        drawn.extend((name, m) for m in draw(from_schema(inlined(name)), per_type, random_seed + offset))
    return tuple(drawn[:count])


def warm(fuzz_examples: int) -> None:
    """Generate, before any case holds a connection, every input the cases will send."""
    invalid_probes(fuzz_examples)
    invalid_probes(HISTORY_PROBES, HISTORY_SEED)
    valid_probes(max(4, fuzz_examples // 4))


# The bad input sent into a conversation with history (errors.history_survives_bad_input).
HISTORY_PROBES = 15
HISTORY_SEED = 7


def _spread(probes: list[Probe], count: int) -> list[Probe]:
    """Keep `count` probes, taking every kind of mutation before repeating one."""
    if len(probes) <= count:
        return probes
    step = len(probes) / count
    return [probes[int(i * step)] for i in range(count)]
