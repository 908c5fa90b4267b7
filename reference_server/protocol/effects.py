"""What the decision core asks the I/O layer to do. Plain data; the endpoint carries them out in order.

Two effects are questions: `AdmitRun` (may this user start a run now? the rate limiter answers,
which is shared by all of the user's connections) and `FindSession` (what is the session a resume
names?). The endpoint answers each by calling the core back (`on_admission`, `on_resume_target`)
before it reads the next frame, so no other input can come between a question and its answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Event = dict[str, Any]


@dataclass(frozen=True)
class Send:
    """Queue `event` on the connection's current session (the session sequences it)."""

    event: Event


@dataclass(frozen=True)
class Close:
    """Close the connection with `code` (a registry close code) after what was queued is sent."""

    code: int
    reason: str


@dataclass(frozen=True)
class StartRun:
    """Run the agent for one message in the connection's current session."""

    run_id: str
    message_id: str
    content: str


@dataclass(frozen=True)
class CancelRun:
    """Stop the run `run_id` (ASP-CAN-001); it then ends through the core's `on_run_end`."""

    run_id: str


@dataclass(frozen=True)
class RunRequest:
    """A schema-valid message that passed the conversation and run_in_progress checks."""

    client_id: str | None
    content: str


@dataclass(frozen=True)
class AdmitRun:
    """Ask the rate limiter whether the user may start a run now; answer with `on_admission`."""

    request: RunRequest


@dataclass(frozen=True)
class ResumeRequest:
    session_id: str
    last_seq: int
    client_id: str | None


@dataclass(frozen=True)
class FindSession:
    """Look up the session a resume names; answer with `on_resume_target`."""

    request: ResumeRequest


@dataclass(frozen=True)
class BindResumed:
    """Make the conversation of the session `session_id` (the one a resume found) the user's last
    bound one (ASP-SES-009), before the `resumed` event tells the client it carries it: a client
    that reconnects without conversation_id right after `resumed` gets that conversation."""

    session_id: str


@dataclass(frozen=True)
class SwitchSession:
    """Carry the session `session_id` from now on, replaying its events after `after_seq`.

    The connection's own (fresh) session is discarded. Sent after the `resumed` event, which
    goes out on the old session.
    """

    session_id: str
    after_seq: int


Effect = Send | Close | StartRun | CancelRun | AdmitRun | FindSession | BindResumed | SwitchSession
