"""`asp spec validate`: one message, or a JSONL transcript of server events, judged offline."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from spec import jsondepth
from spec.machine import Violation
from spec.oracle import Oracle
from spec.schemas import check_client_message, check_server_event, client_message_types

EXIT_CLEAN, EXIT_VIOLATIONS, EXIT_UNUSABLE = 0, 1, 2


class UnusableInput(Exception):
    """The input is neither one JSON message nor a JSONL transcript."""


@dataclass
class Verdict:
    kind: str  # "message" or "transcript"
    checked: int
    violations: list[Violation] = field(default_factory=list)


def judge_text(text: str) -> Verdict:
    """Judge a single JSON message, or a JSONL transcript of server events."""
    stripped = text.strip()
    if not stripped:
        raise UnusableInput("input is empty")
    single = _single_value(stripped)
    if single is not None and not _looks_like_jsonl(stripped):
        return _judge_single(single)
    lines = [line for line in stripped.splitlines() if line.strip()]
    if not any(isinstance(_single_value(line), dict) for line in lines):
        raise UnusableInput("no line is a JSON object: not a message, not a JSONL transcript")
    oracle = Oracle()
    for line in lines:
        oracle.feed_text(line)
    if oracle.unjudged:  # JSON nested past the parser: the spec sets no limit, so no verdict either
        raise UnusableInput(f"cannot judge every line: {oracle.unjudged[0]}")
    return Verdict("transcript", len(lines), list(oracle.violations))


def _single_value(text: str) -> Any:
    try:
        return jsondepth.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser reads
        return None


def _looks_like_jsonl(text: str) -> bool:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return False
    try:
        return all(isinstance(jsondepth.loads(line), dict) for line in lines)
    except (ValueError, RecursionError):
        return False


def _judge_single(value: Any) -> Verdict:
    """A lone message is checked by schema only: ordering needs a stream."""
    if not isinstance(value, dict):
        raise UnusableInput("a message must be a JSON object")
    if value.get("type") in client_message_types():
        problems = check_client_message(value)
        return Verdict("message", 1, [Violation("ASP-ENV-004", f"schema: {p}", 1) for p in problems])
    seq = value.get("seq") if isinstance(value.get("seq"), int) else None
    problems = check_server_event(value)
    return Verdict("message", 1, [Violation("ASP-ENV-001", f"schema: {p}", 1, seq) for p in problems])


def run(source: str, out: TextIO = sys.stdout) -> int:
    """CLI body: read FILE or '-' and print each violation with its requirement ID."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {source}: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    try:
        verdict = judge_text(text)
    except UnusableInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    for violation in verdict.violations:
        print(violation, file=out)
    noun = "event" if verdict.kind == "transcript" else "message"
    if verdict.violations:
        print(f"{len(verdict.violations)} violation(s) in {verdict.checked} {noun}(s)", file=out)
        return EXIT_VIOLATIONS
    print(f"ok: {verdict.checked} {noun}(s), no violations", file=out)
    return EXIT_CLEAN
