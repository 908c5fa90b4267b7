"""The always-on oracle: every frame a client receives, checked against schemas and the machine.

Shared by the test client of the reference server, the conformance kit and `asp spec validate`,
so all three judge a stream the same way and cite the same requirement IDs.
"""

from __future__ import annotations

import json
from typing import Any

from spec.machine import SessionMachine, Violation
from spec.registry import close_codes
from spec.schemas import check_server_event, is_vendor_type


class Oracle:
    """Judges the server side of one connection, frame by frame."""

    def __init__(self) -> None:
        self.machine = SessionMachine()
        self.violations: list[Violation] = []
        self.events: list[dict[str, Any]] = []
        self._index = 0

    def feed_text(self, text: str) -> tuple[dict[str, Any] | None, list[Violation]]:
        """Check one text frame; returns the parsed event (None if unusable) and its violations."""
        self._index += 1
        try:
            event = json.loads(text)
        except ValueError as exc:
            return None, self._add([Violation("ASP-TRN-001", f"frame is not JSON: {exc}", self._index)])
        if not isinstance(event, dict):
            return None, self._add([Violation("ASP-TRN-001", "frame is JSON but not an object", self._index)])
        return event, self.feed_event(event, counted=True)

    def feed_binary(self, data: bytes) -> list[Violation]:
        self._index += 1
        return self._add([Violation("ASP-TRN-001", f"binary frame of {len(data)} bytes", self._index)])

    def feed_event(self, event: dict[str, Any], *, counted: bool = False) -> list[Violation]:
        """Check one already-parsed event."""
        if not counted:
            self._index += 1
        self.events.append(event)
        found: list[Violation] = []
        seq = event.get("seq") if isinstance(event.get("seq"), int) else None
        requirement = "ASP-EXT-003" if is_vendor_type(event.get("type")) else "ASP-ENV-001"
        for problem in check_server_event(event):
            found.append(Violation(requirement, f"schema: {problem}", self._index, seq))
        for violation in self.machine.feed(event):
            found.append(Violation(violation.requirement, violation.message, self._index, violation.seq))
        return self._add(found)

    def feed_close(self, code: int | None, reason: str = "") -> list[Violation]:
        """Check how the server closed: only codes of the table that servers send (ASP-CLS-001)."""
        if code is None:
            return []
        entry = close_codes().get(code)
        if entry is not None and entry.sent_by in {"server", "both"}:
            return []
        return self._add(
            [
                Violation(
                    "ASP-CLS-001", f"server closed with {code}, not a server code of the table", self._index
                )
            ]
        )

    def _add(self, found: list[Violation]) -> list[Violation]:
        self.violations.extend(found)
        return found
