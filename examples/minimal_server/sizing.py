"""Events on the wire, and keeping each within `max_event_bytes` (ASP-LIM-011).

Every event leaves as compact JSON with non-ASCII characters escaped (`ensure_ascii`), so the
frame is plain ASCII: valid UTF-8 whatever strings a client sent (a lone surrogate included,
ASP-TRN-001), and its size in bytes is its length.

What does not fit is made to fit here, never elsewhere:
- text is split into several `text_delta` events (`split_text`), never cut;
- a `tool_call` loses its arguments (`{}`), a `tool_result` keeps a string prefix of its content,
  each marked `truncated: true`;
- `history` keeps the newest entries that fit and says how many it left out (`truncated`,
  `omitted`); an entry too large alone is shortened into the room left, not left out, and marked
  `truncated: true` when it is the newest or at least `MIN_ENTRY_ROOM` bytes are left.
The stored conversation is never shortened; only what is sent is.
"""

from __future__ import annotations

import json
from typing import Any

Event = dict[str, Any]

# Room kept free in every event for what is added after sizing: `"seq":` with up to 16 digits and
# the optional vendor member (events.py).
RESERVE = 80
# An entry too large alone is shortened, not left out, when the newer entries kept leave at least
# this much room (the spec requires it from 2048 bytes, section 13, ASP-LIM-011; less is allowed).
MIN_ENTRY_ROOM = 1024


def encode(event: Event) -> str:
    """The event as it goes on the wire: compact JSON, ASCII only."""
    return json.dumps(event, separators=(",", ":"))


def size(value: Any) -> int:
    """Bytes `value` takes in an encoded event."""
    return len(encode(value))


def _text_size(text: str) -> int:
    return len(json.dumps(text)) - 2  # without the quotes


def prefix(text: str, budget: int) -> str:
    """The longest beginning of `text` whose encoded form (without quotes) takes at most `budget` bytes."""
    if _text_size(text) <= budget:
        return text
    fits, too_long = 0, min(len(text), max(budget, 0) + 1)  # every character takes at least a byte
    while too_long - fits > 1:  # binary search: text[:fits] fits, text[:too_long] does not
        middle = (fits + too_long) // 2
        if _text_size(text[:middle]) <= budget:
            fits = middle
        else:
            too_long = middle
    return text[:fits]


def split_text(text: str, budget: int) -> list[str]:
    """`text` cut into consecutive non-empty pieces that each encode within `budget` bytes."""
    if _text_size(text) <= budget:
        return [text]
    pieces = []
    while text:
        piece = prefix(text, budget) or text[0]
        pieces.append(piece)
        text = text[len(piece) :]
    return pieces


def text_budget(event_without_text: Event, limit: int) -> int:
    """Bytes left for a string member once the rest of `event_without_text` (holding "") is counted."""
    return limit - RESERVE - size(event_without_text)


def fit_tool_call(event: Event, limit: int) -> Event:
    """A `tool_call` within `limit`: too large, its arguments become `{}` and it says `truncated`."""
    if size(event) + RESERVE <= limit:
        return event
    return {**event, "arguments": {}, "truncated": True}


def fit_tool_result(event: Event, limit: int) -> Event:
    """A `tool_result` within `limit`: too large, its content becomes a string prefix of its JSON."""
    if size(event) + RESERVE <= limit:
        return event
    shell = {**event, "content": "", "truncated": True}
    return {**shell, "content": prefix(_as_text(event["content"]), text_budget(shell, limit))}


def _as_text(content: Any) -> str:
    """What a shortened tool content is a prefix of: a string's own text, any other value's JSON."""
    return content if isinstance(content, str) else encode(content)


def shorten_entry(entry: Event, budget: int) -> Event:
    """A history entry encoded within `budget` bytes, marked `truncated` when it had to be cut.

    Text keeps its beginning; a tool entry's arguments become `{}` and its content a string prefix.
    """
    if size(entry) <= budget:
        return entry
    shell = {**entry, "content": "", "truncated": True}
    if entry.get("role") == "tool":
        shell["arguments"] = {}
    room = budget - size(shell)
    return {**shell, "content": prefix(_as_text(entry["content"]), max(room, 0))}


def fit_history(event: Event, limit: int) -> Event:
    """A `history` event within `limit`: the newest entries that fit, in stored order (ASP-LIM-011).

    Entries left out are counted in `omitted` with `truncated: true`. Walking from the newest, the
    first entry that does not fit ends the walk; if it is too large alone (no event holding it
    whole fits) and is the newest, or at least `MIN_ENTRY_ROOM` bytes are left, it is kept
    shortened into the room left (`shorten_entry`), and the entries older than it are left out.
    """
    entries: list[Event] = event["messages"]
    if size(event) + RESERVE <= limit:
        return event
    # Room for the envelope, the brackets and commas, and the two members added below.
    shell = {**event, "messages": [], "truncated": True, "omitted": len(entries)}
    alone = budget = limit - RESERVE - size(shell)
    kept: list[Event] = []
    for entry in reversed(entries):
        comma = 1 if kept else 0
        cost = size(entry) + comma
        if cost <= budget:
            kept.append(entry)
            budget -= cost
            continue
        if size(entry) > alone and (not kept or budget - comma >= MIN_ENTRY_ROOM):
            kept.append(shorten_entry(entry, budget - comma))
        break
    kept.reverse()
    fitted = {**event, "messages": kept}
    if len(kept) < len(entries):
        fitted.update(truncated=True, omitted=len(entries) - len(kept))
    return fitted
