"""Deliberately broken clients: asp-client.js patched as it loads (find/replace pairs, each of which
must match once), and one small script in the manner of the seed template. Each names the
scenarios that catch it and the requirement it breaks."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class BrokenClient:
    patches: tuple[tuple[str, str], ...]
    scenarios: tuple[str, ...]
    requirement: str
    strict: bool = False  # a missed SHOULD is a warning: --strict makes it fail the run
    finding: str = ""  # a word the failed finding's message holds (which check caught it)
    command: tuple[str, ...] = ()  # a script instead of a patched asp-client.js


DELAY = "const delayMs = minimum + Math.round(this.random() * ceiling);"
NEVER = 'if (advice === "never") {'

PANEL: dict[str, BrokenClient] = {
    "fixed_3s_retry": BrokenClient(
        ((DELAY, "const delayMs = 3000; // one fixed delay"),),
        ("reconnect.first_delay_after_1013",),
        "ASP-CLS-004",
        strict=True,
    ),
    "retries_after_4001": BrokenClient(
        ((NEVER, 'if (advice === "never" && code !== 4001) {'),),
        ("reconnect.never_after_4001",),
        "ASP-AUTH-009",
    ),
    "retries_after_4002": BrokenClient(
        ((NEVER, 'if (advice === "never" && code !== 4002) {'),),
        ("reconnect.never_after_4002",),
        "ASP-DUP-004",
    ),
    "storm_without_jitter": BrokenClient(
        ((DELAY, "const delayMs = 0; // reconnect at once, every time"),),
        ("reconnect.backoff",),
        "ASP-CLS-004",
        strict=True,
        finding="jitter",
    ),
    "no_floor_after_1013": BrokenClient(
        (
            (
                "const minimum = (CLOSE_CODES[code] && CLOSE_CODES[code].min_delay_ms) || 0;",
                "const minimum = 0;",
            ),
        ),
        ("reconnect.first_delay_after_1013",),
        "ASP-CLS-004",
        strict=True,
    ),
    "eager_after_4003": BrokenClient(
        (('if (advice === "on_demand") {', 'if (advice === "on_demand" && false) {'),),
        ("reconnect.on_demand_after_4003",),
        "ASP-CLS-003",
    ),
    "unknown_code_never": BrokenClient(
        (("(CLOSE_CODES[code] || CLOSE_CODES[1006])", "(CLOSE_CODES[code] || CLOSE_CODES[1000])"),),
        ("reconnect.unknown_code_as_backoff",),
        "ASP-CLS-006",
        strict=True,
    ),
    "wrong_last_seq": BrokenClient(
        (("last_seq: previous.lastSeq })", "last_seq: previous.lastSeq - 1 })"),),
        ("resume.drop_mid_run",),
        "ASP-RES-008",
        finding="last_seq",
    ),
    "duplicates_kept": BrokenClient(
        (("if (event.seq <= this.lastSeq) return; // a replayed duplicate (ASP-RES-005)", ""),),
        ("resume.drop_mid_run",),
        "ASP-RES-005",
        finding="undisturbed",
    ),
    "history_run_shown_twice": BrokenClient(
        (("return; // the replay of a run the history already holds complete", "// shown again:"),),
        ("resume.run_complete_in_history",),
        "ASP-RES-009",
    ),
    "old_seq_after_resume_failed": BrokenClient(
        (("this.lastSeq = session.seq;", "this.lastSeq = Math.max(this.lastSeq, session.seq);"),),
        ("resume.failed_falls_back_to_history",),
        "ASP-RES-010",
    ),
    "ignores_seq_gap": BrokenClient(
        (
            (
                "if (event.seq > this.lastSeq + 1 && !this._awaitingResume) return this._broken(",
                "if (false) return this._broken(",
            ),
        ),
        ("resume.seq_gap",),
        "ASP-ENV-003",
        strict=True,
    ),
    "no_heartbeats": BrokenClient(
        (("this._startPinging(session.limits.heartbeat_interval_ms);", ""),),
        ("heartbeats.two_silent_intervals",),
        "ASP-HB-004",
        strict=True,
    ),
    "retries_not_retryable": BrokenClient(
        (
            (
                "  send(message) {\n",
                "  send(message) {\n    (this._sent ||= new Map()).set(message.id, message);\n",
            ),
            (
                "    this._deliver(event, true);\n  }",
                "    this._deliver(event, true);\n"
                '    if (event.type === "error" && this._sent && this._sent.has(event.message_id)) {\n'
                "      const again = this._sent.get(event.message_id);\n"
                "      setTimeout(() => this.send(again), 300);\n"
                "    }\n  }",
            ),
        ),
        ("errors.no_retry_when_not_retryable",),
        "ASP-ERR-011",
    ),
    "x_event_is_an_error": BrokenClient(
        (
            (
                'if (event.type === "session") return this._opened(event);',
                'if (event.type === "session") return this._opened(event);\n'
                '    if (event.type.startsWith("x-")) {\n'
                '      this._emit("error", { type: "error", code: "unknown_event", message: event.type });\n'
                '      return this._broken("unknown event " + event.type);\n'
                "    }",
            ),
        ),
        ("extensions.x_members_and_events",),
        "ASP-EXT-002",
    ),
    "rejects_a_higher_minor": BrokenClient(
        (
            (
                "  _opened(session) {\n",
                '  _opened(session) {\n    if (session.protocol_version !== "1.1") return this.close();\n',
            ),
        ),
        ("versioning.higher_minor",),
        "ASP-VER-005",
    ),
    "token_without_asp_v1": BrokenClient(
        (
            (
                "[SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX + this.token]",
                "[TOKEN_SUBPROTOCOL_PREFIX + this.token]",
            ),
        ),
        ("versioning.higher_minor",),
        "ASP-AUTH-011",
    ),
    "ping_id_not_a_string": BrokenClient(
        (('{ type: "ping", id: `hb-${this._pingCounter}` }', '{ type: "ping", id: this._pingCounter }'),),
        ("heartbeats.two_silent_intervals",),
        "ASP-ENV-004",
        finding="ping: ",
    ),
    "seed_template_script": BrokenClient(
        (),
        ("reconnect.never_after_4001",),
        "ASP-AUTH-009",
        command=(sys.executable, str(HERE / "seed_client.py")),
    ),
}
