"""Executes spec/lifecycle.yaml: the ASP session and run ordering machine, sans I/O.

The table decides which transitions exist, which guards apply and which requirement a failed
guard breaks; this module only defines what each named guard, action and check computes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from spec.resources import load_yaml, schema_documents
from spec.schemas import is_vendor_type

Event = Mapping[str, Any]


@dataclass(frozen=True)
class Violation:
    """A broken requirement, located at one event of the stream."""

    requirement: str
    message: str
    index: int
    seq: int | None = None

    def __str__(self) -> str:
        where = f"event #{self.index}" + (f" (seq {self.seq})" if self.seq is not None else "")
        return f"{self.requirement} at {where}: {self.message}"


@dataclass
class Context:
    """What the machine remembers about the session so far."""

    state: str
    seq: int = 0
    session_id: str | None = None
    capabilities: frozenset[str] = frozenset()
    events_in_session: int = 0
    resumed: bool = False
    run: str | None = None
    partial: bool = False
    open_tool_calls: set[str] = field(default_factory=set)
    seen_tool_calls: set[str] = field(default_factory=set)
    runs_seen: set[str] = field(default_factory=set)
    finished_runs: set[str] = field(default_factory=set)
    # Frames that went by unparsed since the last seq (JSON nested past the parser: their seq is
    # unknown), so a seq that rises by up to this many more is no gap.
    unseen: int = 0


def _ident(value: object) -> str | None:
    """An identifier (run_id, tool_call_id) as the machine keeps and compares it: a string as is,
    None when absent; any other JSON value (a list, an object, a number: the schema check already
    flags it) as a tag of its type, so a hostile id can never break the machine's sets."""
    if value is None or isinstance(value, str):
        return value
    return f"<{type(value).__name__}>"


def _shown(value: object) -> str:
    """A value for a violation message: its repr, at most 80 characters; a list or an object (which
    may be nested deeper than repr can go) as its type."""
    if isinstance(value, (list, dict)):
        return f"<{type(value).__name__}>"
    try:
        text = repr(value)
    except ValueError:  # an int beyond the interpreter's digit limit
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def _seq(event: Event) -> int | None:
    value = event.get("seq")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- guards: (context, event) -> None when it holds, else what is wrong ---------------------------


def _seq_is_one(ctx: Context, event: Event) -> str | None:
    return None if _seq(event) == 1 else f"session has seq {_shown(event.get('seq'))}, expected 1"


def _directly_after_session(ctx: Context, event: Event) -> str | None:
    return None if ctx.events_in_session == 1 else "history is sent only immediately after session"


def _no_run_id(ctx: Context, event: Event) -> str | None:
    run_id = _ident(event.get("run_id"))
    return None if run_id is None else f"error names run {_shown(run_id)} but no run is active"


def _run_id_absent_or_current(ctx: Context, event: Event) -> str | None:
    run_id = _ident(event.get("run_id"))
    if run_id is None or run_id == ctx.run:
        return None
    return f"error names run {_shown(run_id)} but the active run is {_shown(ctx.run)}"


def _run_id_is_new(ctx: Context, event: Event) -> str | None:
    run_id = _ident(event.get("run_id"))
    return (
        None if run_id not in ctx.runs_seen else f"run_id {_shown(run_id)} was already used in this session"
    )


def _run_id_is_current(ctx: Context, event: Event) -> str | None:
    run_id = _ident(event.get("run_id"))
    if run_id == ctx.run:
        return None
    return f"{_shown(event.get('type'))} names run {_shown(run_id)}, active run is {_shown(ctx.run)}"


def _tool_call_id_is_new(ctx: Context, event: Event) -> str | None:
    call = _ident(event.get("tool_call_id"))
    return None if call not in ctx.seen_tool_calls else f"tool_call_id {_shown(call)} repeats within the run"


def _tool_call_is_open(ctx: Context, event: Event) -> str | None:
    call = _ident(event.get("tool_call_id"))
    if call in ctx.open_tool_calls:
        return None
    if ctx.partial and call not in ctx.seen_tool_calls:
        return None  # the call was made before the resume point
    if call in ctx.seen_tool_calls:
        return f"tool_call {_shown(call)} already has its tool_result"
    return f"tool_result for {_shown(call)}, which was never called in this run"


def _no_open_tool_calls(ctx: Context, event: Event) -> str | None:
    if not ctx.open_tool_calls:
        return None
    return f"complete while tool calls have no tool_result: {', '.join(sorted(ctx.open_tool_calls))}"


# --- conditions that select a transition ---------------------------------------------------------


def _replay_of_unknown_run(ctx: Context, event: Event) -> str | None:
    run_id = _ident(event.get("run_id"))
    if ctx.resumed and isinstance(run_id, str) and run_id not in ctx.runs_seen:
        return None
    return "not a replayed run"


# --- actions --------------------------------------------------------------------------------------


def _begin_session(ctx: Context, event: Event) -> None:
    ctx.session_id = _ident(event.get("session_id"))
    capabilities = event.get("capabilities")
    ctx.capabilities = (
        frozenset(c for c in capabilities if isinstance(c, str))
        if isinstance(capabilities, list)
        else frozenset()
    )
    ctx.events_in_session = 1


def _resume_session(ctx: Context, event: Event) -> None:
    replay_from = event.get("replay_from")
    ctx.session_id = _ident(event.get("session_id"))
    ctx.seq = replay_from - 1 if isinstance(replay_from, int) else ctx.seq
    ctx.resumed = True
    ctx.events_in_session = 2  # the resumed session is long past its start
    ctx.run = None
    ctx.partial = False
    ctx.open_tool_calls = set()
    ctx.seen_tool_calls = set()
    ctx.runs_seen = set()
    ctx.finished_runs = set()


def _open_run(ctx: Context, event: Event) -> None:
    ctx.run = _ident(event.get("run_id"))
    ctx.runs_seen.add(str(ctx.run))
    ctx.partial = False
    ctx.open_tool_calls = set()
    ctx.seen_tool_calls = set()


def _adopt_run(ctx: Context, event: Event) -> None:
    _open_run(ctx, event)
    ctx.partial = True


def _open_tool_call(ctx: Context, event: Event) -> None:
    call = str(_ident(event.get("tool_call_id")))
    ctx.open_tool_calls.add(call)
    ctx.seen_tool_calls.add(call)


def _close_tool_call(ctx: Context, event: Event) -> None:
    call = str(_ident(event.get("tool_call_id")))
    ctx.open_tool_calls.discard(call)
    ctx.seen_tool_calls.add(call)


def _finish_run(ctx: Context, event: Event) -> None:
    if ctx.run is not None:
        ctx.finished_runs.add(ctx.run)
    ctx.run = None
    ctx.partial = False
    ctx.open_tool_calls = set()


# --- checks applied to every event -------------------------------------------------------------


def _seq_follows(ctx: Context, event: Event) -> str | None:
    seq = _seq(event)
    if seq is None or ctx.seq + 1 <= seq <= ctx.seq + 1 + ctx.unseen:
        return None
    if seq <= ctx.seq:
        return f"seq {seq} after {ctx.seq}: seq must rise by exactly 1"
    return f"seq jumps from {ctx.seq} to {seq}: {seq - ctx.seq - 1} event(s) missing"


def _capability_declared(ctx: Context, event: Event) -> str | None:
    kind = event.get("type")
    needed = event_capabilities().get(kind) if isinstance(kind, str) else None
    if needed is None or needed in ctx.capabilities:
        return None
    return f"{event.get('type')} needs capability {needed!r}, which the session did not declare"


Rule = Callable[[Context, Event], str | None]
Action = Callable[[Context, Event], None]

GUARDS: dict[str, Rule] = {
    "seq_is_one": _seq_is_one,
    "directly_after_session": _directly_after_session,
    "no_run_id": _no_run_id,
    "run_id_absent_or_current": _run_id_absent_or_current,
    "run_id_is_new": _run_id_is_new,
    "run_id_is_current": _run_id_is_current,
    "tool_call_not_yet_called": _tool_call_id_is_new,
    "tool_call_id_is_new": _tool_call_id_is_new,
    "tool_call_is_open": _tool_call_is_open,
    "no_open_tool_calls": _no_open_tool_calls,
}
CONDITIONS: dict[str, Rule] = {"replay_of_unknown_run": _replay_of_unknown_run}
CHECKS: dict[str, Rule] = {"seq_follows": _seq_follows, "capability_declared": _capability_declared}
ACTIONS: dict[str, Action] = {
    "begin_session": _begin_session,
    "resume_session": _resume_session,
    "open_run": _open_run,
    "adopt_run": _adopt_run,
    "open_tool_call": _open_tool_call,
    "close_tool_call": _close_tool_call,
    "finish_run": _finish_run,
}


@cache
def lifecycle() -> dict[str, Any]:
    table: dict[str, Any] = load_yaml("lifecycle.yaml")
    return table


@cache
def judged_requirements() -> tuple[str, ...]:
    """Every requirement the lifecycle table can report, in table order, each once: the states'
    `otherwise`, `unexpected`, `checks`, and the transitions' `violation` and `guards`."""
    table = lifecycle()
    found = [state["otherwise"] for state in table["states"].values() if "otherwise" in state]
    found += [entry["requirement"] for entry in table["unexpected"].values()]
    found += [entry["requirement"] for entry in table["checks"]]
    for transition in table["transitions"]:
        if "violation" in transition:
            found.append(transition["violation"])
        found += [guard["requirement"] for guard in transition.get("guards", ())]
    return tuple(dict.fromkeys(found))


@cache
def event_capabilities() -> dict[str, str]:
    """Event type -> the capability it needs, from the schemas' x-asp-capability."""
    return {
        name: document["x-asp-capability"]
        for name, document in schema_documents().items()
        if "x-asp-capability" in document
    }


class SessionMachine:
    """Feeds server events of one connection through the lifecycle table, collecting violations."""

    def __init__(self) -> None:
        table = lifecycle()
        self.ctx = Context(state=table["initial"])
        self.violations: list[Violation] = []
        self._index = 0

    @property
    def state(self) -> str:
        return self.ctx.state

    @property
    def active_run(self) -> str | None:
        return self.ctx.run

    def skip_unparsed(self) -> None:
        """A frame went by that could not be parsed (its seq unknown): the next seq may rise by one
        more without a gap being reported."""
        self.ctx.unseen += 1

    def feed(self, event: Event) -> list[Violation]:
        """Advance by one event; returns the violations it caused."""
        self._index += 1
        found: list[Violation] = []
        table = lifecycle()
        for entry in table["checks"]:
            if self.ctx.state in entry.get("skip_when_state", ()):
                continue
            problem = CHECKS[entry["check"]](self.ctx, event)
            if problem:
                found.append(self._violation(entry["requirement"], problem, event))
        seq = _seq(event)
        if seq is not None:
            self.ctx.seq = seq  # before the actions, which may move it (resume_session)
            self.ctx.unseen = 0
        self._dispatch(event, found, table)
        self.violations.extend(found)
        return found

    def _dispatch(self, event: Event, found: list[Violation], table: dict[str, Any]) -> None:
        kind = event.get("type")
        if not isinstance(kind, str):
            return
        if is_vendor_type(kind):
            kind = table["vendor_event"]
        run_id = _ident(event.get("run_id"))
        finished = table["unexpected"]["finished_run"]
        if (
            kind in table["run_events"]
            and kind not in finished["except"]
            and run_id in self.ctx.finished_runs
        ):
            requirement = finished["requirement"]
            found.append(
                self._violation(requirement, f"{kind} of run {_shown(run_id)} after its complete", event)
            )
            return
        transition = self._transition(kind, event, table)
        if transition is None:
            if kind in table["run_events"] or kind in table["session_events"]:
                requirement = table["states"][self.ctx.state]["otherwise"]
                found.append(
                    self._violation(requirement, f"{kind} not allowed in state {self.ctx.state}", event)
                )
            return
        if "violation" in transition:
            found.append(
                self._violation(
                    transition["violation"], f"{kind} not allowed in state {self.ctx.state}", event
                )
            )
            return
        for guard in transition.get("guards", ()):
            problem = GUARDS[guard["guard"]](self.ctx, event)
            if problem:
                found.append(self._violation(guard["requirement"], problem, event))
        if transition["to"] != "same":
            self.ctx.state = transition["to"]
        self.ctx.events_in_session += 1
        for action in transition.get("actions", ()):
            ACTIONS[action](self.ctx, event)
        if transition.get("then") == "reprocess":
            self._dispatch(event, found, table)

    def _transition(self, kind: str, event: Event, table: dict[str, Any]) -> dict[str, Any] | None:
        for transition in table["transitions"]:
            if self.ctx.state not in transition["from"] or kind not in transition["events"]:
                continue
            condition = transition.get("when")
            if condition and CONDITIONS[condition](self.ctx, event) is not None:
                continue
            candidate: dict[str, Any] = transition
            return candidate
        return None

    def _violation(self, requirement: str, message: str, event: Event) -> Violation:
        return Violation(requirement=requirement, message=message, index=self._index, seq=_seq(event))
