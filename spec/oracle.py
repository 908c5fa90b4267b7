"""The always-on oracle: every frame a client receives, checked against schemas and the machine.

Shared by the test client of the reference server, the conformance kit and `asp spec validate`,
so all three judge a stream the same way and cite the same requirement IDs.
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from typing import Any

from spec import catalog, jsondepth
from spec.machine import SessionMachine, Violation, judged_requirements
from spec.registry import close_codes
from spec.schemas import check_server_event, is_vendor_type

# Size limits a server announces in `session.limits` and then holds every event of the connection
# to, each with the requirement an event over it breaks: limit member -> requirement ID.
SIZE_LIMITS = {"max_event_bytes": "ASP-LIM-011"}


def event_bytes(event: dict[str, Any]) -> int:
    """The size in bytes of an event's compact UTF-8 JSON: what a frame holding it takes at least."""
    return len(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode())


def _parse_int(digits: str) -> int | Decimal:
    """A JSON integer: an int, or a Decimal past the interpreter's digit limit (Python refuses
    longer digit strings as int, CVE-2020-10735; JSON has no such limit)."""
    limit = sys.get_int_max_str_digits()
    return int(digits) if not limit or len(digits.lstrip("-")) <= limit else Decimal(digits)


def _not_json(constant: str) -> Any:
    """NaN, Infinity and -Infinity are Python's extension, not JSON (RFC 8259 section 6)."""
    raise ValueError(f"{constant} is not a JSON number")


def parse_frame(text: str) -> Any:
    """One text frame as JSON, strictly: no NaN or Infinity, integers of any length.

    Raises:
        ValueError: the text is not JSON.
        RecursionError: the JSON nests deeper than this interpreter can parse (about 1,000 levels;
            the spec sets no limit, so this is no verdict on the frame).
    """
    return jsondepth.loads(text, parse_int=_parse_int, parse_constant=_not_json)


# What the oracle judges beside the lifecycle machine (spec/lifecycle.yaml), and where.
NOT_JSON = "ASP-TRN-001"  # a frame that is binary, not JSON, or not an object
SCHEMA = "ASP-ENV-001"  # an event that breaks its schema
VENDOR_SCHEMA = "ASP-EXT-003"  # a vendor x- event that breaks the envelope
CLOSE = "ASP-CLS-001"  # a close code the registry does not let servers send


def oracle_requirements() -> tuple[str, ...]:
    """Every requirement an `Oracle` can report: its frame checks and the lifecycle table's."""
    return tuple(
        dict.fromkeys((NOT_JSON, SCHEMA, VENDOR_SCHEMA, CLOSE, *SIZE_LIMITS.values(), *judged_requirements()))
    )


class Oracle:
    """Judges the server side of one connection, frame by frame.

    Never raises for anything a server sends: every frame ends as an event plus its violations, or
    as a violation, or (JSON nested deeper than the interpreter can parse, which the spec does not
    forbid) as a note in `unjudged`. `events` and `violations` keep everything this connection
    received, so memory grows with the connection's traffic, not beyond it.
    """

    def __init__(self) -> None:
        self.machine = SessionMachine()
        self.violations: list[Violation] = []
        self.events: list[dict[str, Any]] = []
        self.unjudged: list[str] = []
        self._index = 0
        # The size limits this connection's session announced (member -> bytes), once it has.
        self._size_limits: dict[str, int] = {}

    def feed_text(self, text: str) -> tuple[dict[str, Any] | None, list[Violation]]:
        """Check one text frame; returns the parsed event (None if unusable) and its violations."""
        self._index += 1
        try:
            event = parse_frame(text)
        except ValueError as exc:
            return None, self._add([Violation(NOT_JSON, f"frame is not JSON: {exc}", self._index)])
        except RecursionError:
            self.unjudged.append(f"frame #{self._index}: JSON nested too deep to parse; not judged")
            self.machine.skip_unparsed()  # its seq is unknown: the next one is no gap for it
            return None, []
        if not isinstance(event, dict):
            return None, self._add([Violation(NOT_JSON, "frame is JSON but not an object", self._index)])
        return event, self.feed_event(event, counted=True, size=_utf8_size(text))

    @property
    def frames(self) -> int:
        """How many frames (and parsed events fed directly) this oracle has judged."""
        return self._index

    def feed_binary(self, data: bytes) -> list[Violation]:
        self._index += 1
        return self._add([Violation(NOT_JSON, f"binary frame of {len(data)} bytes", self._index)])

    def feed_unreadable(self, problem: str) -> list[Violation]:
        """A frame the transport could not hand over (a text frame that is not UTF-8, a broken
        frame): it is no UTF-8 JSON text frame (ASP-TRN-001). `problem` says what the transport saw."""
        self._index += 1
        return self._add([Violation(NOT_JSON, f"unreadable frame: {problem}", self._index)])

    def feed_event(
        self, event: dict[str, Any], *, counted: bool = False, size: int | None = None
    ) -> list[Violation]:
        """Check one already-parsed event; `size` is its frame's UTF-8 length in bytes (None: the
        event's compact JSON is measured, for callers that hold no frame)."""
        if not counted:
            self._index += 1
        self.events.append(event)
        found: list[Violation] = []
        seq = event.get("seq") if isinstance(event.get("seq"), int) else None
        if event.get("type") == "session":
            self._size_limits = _announced_size_limits(event)
        if self._size_limits:
            measured = size if size is not None else event_bytes(event)
            for member, limit in self._size_limits.items():
                if measured > limit:
                    message = f"event of {measured} bytes exceeds the announced {member} {limit}"
                    found.append(Violation(SIZE_LIMITS[member], message, self._index, seq))
        requirement = VENDOR_SCHEMA if is_vendor_type(event.get("type")) else SCHEMA
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
            [Violation(CLOSE, f"server closed with {code}, not a server code of the table", self._index)]
        )

    def _add(self, found: list[Violation]) -> list[Violation]:
        self.violations.extend(found)
        return found


def _utf8_size(text: str) -> int:
    """A text frame's length in bytes as UTF-8 (lone surrogates counted as their 3 bytes)."""
    return len(text.encode("utf-8", "surrogatepass"))


def _announced_size_limits(session: dict[str, Any]) -> dict[str, int]:
    """The size limits of `SIZE_LIMITS` a session event announces and binds its server to: each a
    positive integer in `limits` (a malformed one is the schema's to judge), and the requirement in
    force for the announced `protocol_version` (spec/catalog.py `since`)."""
    limits = session.get("limits")
    version = session.get("protocol_version")
    if not isinstance(limits, dict) or not isinstance(version, str):
        return {}
    found: dict[str, int] = {}
    for member, requirement_id in SIZE_LIMITS.items():
        value = limits.get(member)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            continue
        try:
            bound = catalog.requirement(requirement_id).applies_to(version)
        except ValueError:  # not MAJOR.MINOR: the schema judges the version
            continue
        if bound:
            found[member] = value
    return found
