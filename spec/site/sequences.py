"""The sequence diagrams of the spec site: scenarios as data (sequences.yaml), checked, laid out.

`sequences()` loads the scenarios, expands their transcript excerpts from spec/examples and
checks every frame (client frames by schema; each connection's server events by the oracle,
i.e. the schemas and lifecycle.yaml; close codes by the registry; each client message answered).
`layout()` turns one checked scenario into coordinates for the SVG template: the picture is
computed from the frames, never drawn by hand.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from spec import EXAMPLES_DIR
from spec.oracle import Oracle
from spec.registry import close_codes
from spec.schemas import check_client_message

STEP_KINDS = ("connect", "client", "server", "transcript", "note", "close")
HIDDEN_MEMBERS = frozenset({"type", "seq", "run_id", "conversation_id"})
DETAIL_CHARS = 80


class SequenceError(ValueError):
    """A scenario of sequences.yaml is malformed or breaks the spec; the message lists every problem."""


@dataclass(frozen=True)
class Step:
    """One drawn step: kind is connect, client, server, note or close (transcripts are expanded)."""

    kind: str
    frame: dict[str, Any] | None = None
    text: str = ""
    code: int | None = None
    replayed: bool = False


@dataclass(frozen=True)
class Sequence:
    key: str
    title: str
    summary: str
    requirements: tuple[str, ...]
    steps: tuple[Step, ...]


@cache
def sequences() -> tuple[Sequence, ...]:
    """Every scenario of sequences.yaml, expanded and checked.

    Raises SequenceError naming each problem (scenario, step number, what is wrong).
    """
    raw = yaml.safe_load(resources.files("spec.site").joinpath("sequences.yaml").read_text(encoding="utf-8"))
    loaded = []
    problems: list[str] = []
    for key, scenario in raw.items():
        steps = _expand(key, scenario["steps"], problems)
        problems.extend(f"{key}: {problem}" for problem in check(steps))
        loaded.append(
            Sequence(
                key=key,
                title=scenario["title"],
                summary=" ".join(scenario["summary"].split()),
                requirements=tuple(scenario.get("requirements", ())),
                steps=tuple(_mark_replays(steps)),
            )
        )
    if problems:
        raise SequenceError("sequences.yaml: " + "; ".join(problems))
    return tuple(loaded)


def _expand(key: str, raw_steps: list[dict[str, Any]], problems: list[str]) -> list[Step]:
    steps: list[Step] = []
    for number, raw in enumerate(raw_steps, start=1):
        if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in STEP_KINDS:
            problems.append(f"{key}: step {number}: one of {', '.join(STEP_KINDS)} expected, got {raw!r}")
            continue
        kind, value = next(iter(raw.items()))
        if kind == "transcript":
            steps.extend(Step("server", frame=event) for event in _excerpt(value))
        elif kind in {"client", "server"}:
            steps.append(Step(kind, frame=value))
        elif kind == "close":
            steps.append(Step(kind, code=int(value["code"]), text=str(value.get("text", ""))))
        else:
            steps.append(Step(kind, text=str(value)))
    return steps


def _excerpt(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Lines `A-B` (1-based, inclusive) of a transcript in spec/examples/transcripts."""
    lines = (EXAMPLES_DIR / "transcripts" / spec["file"]).read_text(encoding="utf-8").splitlines()
    first, _, last = str(spec["lines"]).partition("-")
    chosen = lines[int(first) - 1 : int(last or first)]
    return [json.loads(line) for line in chosen]


def check(steps: list[Step]) -> list[str]:
    """Every problem of one expanded scenario (empty when it matches the spec)."""
    problems: list[str] = []
    oracle = Oracle()
    for number, step in enumerate(steps, start=1):
        if step.kind == "connect":
            oracle = Oracle()
        elif step.kind == "client" and step.frame is not None:
            problems.extend(f"step {number}: {problem}" for problem in check_client_message(step.frame))
            answer = _answer_problem(step.frame, steps[number:])
            if answer:
                problems.append(f"step {number}: {answer}")
        elif step.kind == "server" and step.frame is not None:
            problems.extend(f"step {number}: {violation}" for violation in oracle.feed_event(step.frame))
        elif step.kind == "close" and step.code not in close_codes():
            problems.append(f"step {number}: close code {step.code} is not in registry.yaml")
    return problems


def _answer_problem(message: dict[str, Any], after: list[Step]) -> str | None:
    """Whether the server events after a client message (same connection) hold its answer."""
    events = []
    for step in after:
        if step.kind in {"connect", "close"}:
            break
        if step.kind == "server" and step.frame is not None:
            events.append(step.frame)
    kind, ident = message.get("type"), message.get("id")
    if kind == "message":
        answer = next((e for e in events if e.get("type") in {"run_started", "error"}), None)
        if answer is None or (ident is not None and answer.get("message_id") != ident):
            return f"message {ident!r} is not answered by a run_started or error carrying its id"
    elif kind == "ping":
        if not any(e.get("type") == "pong" and e.get("id") == ident for e in events):
            return f"ping {ident!r} gets no pong carrying its id"
    elif kind == "resume":
        answer = next((e for e in events if e.get("type") in {"resumed", "error"}), None)
        honoured = (
            answer is not None
            and answer.get("type") == "resumed"
            and answer.get("session_id") == message.get("session_id")
            and answer.get("replay_from") == message.get("last_seq", -1) + 1
        )
        refused = answer is not None and answer.get("code") == "resume_failed"
        if not (honoured or refused):
            return "resume is answered neither by a matching resumed nor by resume_failed"
    elif kind == "cancel":
        run_id = message.get("run_id")
        ended = any(
            e.get("type") == "complete"
            and e.get("finish_reason") == "cancelled"
            and (run_id is None or e.get("run_id") == run_id)
            for e in events
        )
        refused = any(e.get("code") == "no_active_run" for e in events)
        if not (ended or refused):
            return "cancel is answered neither by a cancelled complete nor by no_active_run"
    return None


def _mark_replays(steps: list[Step]) -> list[Step]:
    """Server events replayed after `resumed` (their seq within its replay range) are marked."""
    marked: list[Step] = []
    replay: range = range(0)
    for step in steps:
        frame = step.frame or {}
        if step.kind == "server" and frame.get("type") == "resumed":
            start = int(frame["replay_from"])
            replay = range(start, start + int(frame["replay_count"]))
        elif step.kind == "server" and frame.get("seq") in replay:
            step = Step(step.kind, frame=step.frame, replayed=True)
        elif step.kind == "connect":
            replay = range(0)
        marked.append(step)
    return marked


# --- layout --------------------------------------------------------------------------------------

WIDTH = 880
CLIENT_X = 130
SERVER_X = 750
TOP = 70
ROW = 46
LINE = 17
NOTE_PAD = 14
NOTE_CHARS = 92
BOTTOM = 30


@dataclass(frozen=True)
class Row:
    """One drawn row.

    A message row is an arrow at height y from x1 to x2 with a label and a detail line above it;
    a note row (note, connect, close) is a box from box_y, box_h high, holding `lines` (y, text).
    `tooltip` is the whole frame (or text), shown on hover and read by screen readers.
    """

    y: int
    kind: str
    classes: str
    label: str
    detail: str
    tooltip: str
    x1: int = CLIENT_X
    x2: int = SERVER_X
    box_y: int = 0
    box_h: int = 0
    lines: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class Bar:
    """A run's activation bar on the server's lifeline, from its first event to complete (or a close)."""

    y1: int
    y2: int
    run_id: str


@dataclass(frozen=True)
class Layout:
    width: int
    height: int
    client_x: int
    server_x: int
    top: int
    rows: tuple[Row, ...]
    bars: tuple[Bar, ...]


def layout(sequence: Sequence) -> Layout:
    """Coordinates of one scenario's diagram, in SVG user units: a row per step, a bar per run."""
    rows: list[Row] = []
    open_runs: dict[str, int] = {}
    bars: list[Bar] = []
    y = TOP
    for step in sequence.steps:
        frame = step.frame or {}
        if step.kind in {"client", "server"}:
            y += ROW
            rows.append(_message_row(step, y))
            run_id = frame.get("run_id")
            if step.kind == "server" and isinstance(run_id, str):
                open_runs.setdefault(run_id, y)
                if frame.get("type") == "complete":
                    bars.append(Bar(open_runs.pop(run_id), y, run_id))
        else:
            row = _note_row(step, y)
            rows.append(row)
            y = row.box_y + row.box_h
            if step.kind == "close":
                bars.extend(Bar(start, row.box_y, run_id) for run_id, start in open_runs.items())
                open_runs.clear()
    bars.extend(Bar(start, y, run_id) for run_id, start in open_runs.items())
    return Layout(WIDTH, y + BOTTOM, CLIENT_X, SERVER_X, TOP, tuple(rows), tuple(bars))


def arrow_text(step: Step) -> tuple[str, str]:
    """The two lines written on a message's arrow: `type · seq N` and its members worth reading."""
    frame = step.frame or {}
    kind = str(frame.get("type", "?"))
    label = kind if step.kind == "client" or "seq" not in frame else f"{kind} · seq {frame['seq']}"
    if step.replayed:
        label += " (replayed)"
    return label, detail(frame, HIDDEN_MEMBERS if step.kind == "server" else frozenset({"type"}))


def _message_row(step: Step, y: int) -> Row:
    frame = step.frame or {}
    label, text = arrow_text(step)
    classes = [step.kind]
    if frame.get("type") == "error":
        classes.append("error")
    if step.replayed:
        classes.append("replayed")
    tooltip = json.dumps(frame, ensure_ascii=False)
    # arrows stop at the server's run bar (6 units each side of its lifeline)
    x1, x2 = (CLIENT_X, SERVER_X - 7) if step.kind == "client" else (SERVER_X - 6, CLIENT_X + 1)
    return Row(y, step.kind, " ".join(classes), label, text, tooltip, x1, x2)


def _note_row(step: Step, top: int) -> Row:
    if step.kind == "close":
        name = close_codes()[step.code].name if step.code in close_codes() else "?"
        label = f"connection closed: {step.code} {name}" + (f": {step.text}" if step.text else "")
    elif step.kind == "connect":
        label = f"connection opens: {step.text}" if step.text else "connection opens"
    else:
        label = step.text
    wrapped = textwrap.wrap(label, NOTE_CHARS) or [""]
    box_y = top + NOTE_PAD
    box_h = NOTE_PAD + LINE * len(wrapped)
    lines = tuple((box_y + LINE * (n + 1), text) for n, text in enumerate(wrapped))
    return Row(box_y + box_h, step.kind, step.kind, label, "", label, box_y=box_y, box_h=box_h, lines=lines)


def detail(frame: dict[str, Any], hidden: frozenset[str] = HIDDEN_MEMBERS) -> str:
    """The members worth reading on an arrow: `key=value` pairs, long values elided, capped in length."""
    parts = []
    for key, value in frame.items():
        if key in hidden:
            continue
        shown = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        if isinstance(value, dict | list) and len(shown) > 28:
            shown = "{…}" if isinstance(value, dict) else "[…]"
        parts.append(f"{key}={shown}")
    text = " ".join(parts)
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"
