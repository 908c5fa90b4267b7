"""Server events within max_event_bytes (ASP-LIM-011). Pure functions over event dicts.

`fit(event, max_bytes)` returns events whose UTF-8 JSON is at most `max_bytes` each:

- text_delta / reasoning_delta: split into consecutive deltas, never shortened;
- tool_call: arguments become {} and `truncated: true`;
- tool_result: content becomes a string prefix (of the string, or of the JSON text of any other
  value) and `truncated: true`;
- history: the newest entries that fit; `truncated: true` and `omitted: N` when earlier ones are
  left out; an entry too large alone is shortened (text keeps its beginning, tool arguments {},
  tool content a string prefix) and marked `truncated: true`.

Sizes are measured with the wire encoder, with room for the seq the session adds later.
"""

from __future__ import annotations

import json
from typing import Any

from reference_server.protocol.wire import encoded_size, json_safe

Event = dict[str, Any]
SEQ_ROOM = len(',"seq":9007199254740991')  # the largest seq the schema allows
MIN_ENTRY_ROOM = 1024  # an oversized history entry is shortened only into at least this much room


def size_of(event: Event) -> int:
    """Bytes the event takes on the wire once the session has given it a seq."""
    return encoded_size(event) + (0 if "seq" in event else SEQ_ROOM)


def fit(event: Event, max_bytes: int) -> list[Event]:
    """`event` as one or more events of at most `max_bytes` each (see the module docstring)."""
    if size_of(event) <= max_bytes:
        return [event]
    kind = event.get("type")
    if kind in ("text_delta", "reasoning_delta"):
        return _split_delta(event, max_bytes)
    if kind == "tool_call":
        return [{**event, "arguments": {}, "truncated": True}]
    if kind == "tool_result":
        shortened = {**event, "content": "", "truncated": True}
        return [_with_prefix(shortened, "content", _as_text(event.get("content")), max_bytes)]
    if kind == "history":
        return [fit_history(event, max_bytes)]
    return [event]  # every other event is small by construction (bounded ids and messages)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(json_safe(value), ensure_ascii=False, separators=(",", ":"))


def prefix_within(text: str, room: int) -> str:
    """The longest prefix of `text` whose JSON string literal (quotes excluded) fits in `room` bytes."""
    if room <= 0 or not text:
        return ""
    if encoded_size(text) - 2 <= room:
        return text
    low, high = 0, min(len(text), room)  # a character takes at least one byte
    while low < high:  # the largest length that fits; the cost only grows with the length
        middle = (low + high + 1) // 2
        if encoded_size(text[:middle]) - 2 <= room:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def _with_prefix(event: Event, key: str, text: str, max_bytes: int) -> Event:
    """`event` (whose `key` is "") with `key` set to the longest prefix of `text` that fits."""
    room = max_bytes - size_of(event)
    return {**event, key: prefix_within(text, room)}


def _split_delta(event: Event, max_bytes: int) -> list[Event]:
    envelope = size_of({**event, "delta": ""})
    room = max(1, max_bytes - envelope)
    text: str = event["delta"]
    pieces: list[Event] = []
    while text:
        piece = prefix_within(text, room) or text[:1]
        pieces.append({**event, "delta": piece})
        text = text[len(piece) :]
    return pieces


def shorten_entry(entry: dict[str, Any], room: int) -> dict[str, Any]:
    """A history entry cut to at most `room` bytes, marked truncated (ASP-LIM-011)."""
    if entry.get("role") == "tool":
        shortened = {**entry, "arguments": {}, "content": "", "truncated": True}
        content_room = room - encoded_size(shortened)
        return {**shortened, "content": prefix_within(_as_text(entry.get("content")), content_room)}
    shortened = {**entry, "content": "", "truncated": True}
    content_room = room - encoded_size(shortened)
    return {**shortened, "content": prefix_within(str(entry.get("content", "")), content_room)}


def fit_history(event: Event, max_bytes: int) -> Event:
    """The history event holding the newest entries that fit in `max_bytes`."""
    entries: list[dict[str, Any]] = event["messages"]
    envelope = size_of({**event, "messages": [], "truncated": True, "omitted": len(entries)})
    alone = room = max_bytes - envelope
    kept: list[dict[str, Any]] = []
    for entry in reversed(entries):
        comma = 1 if kept else 0
        size = encoded_size(entry)
        if size + comma <= room:
            kept.append(entry)
            room -= size + comma
            continue
        if size > alone and (not kept or room - comma >= MIN_ENTRY_ROOM):  # too large alone
            kept.append(shorten_entry(entry, room - comma))
        break
    kept.reverse()
    fitted: Event = {**event, "messages": kept}
    omitted = len(entries) - len(kept)
    if omitted:
        fitted["truncated"] = True
        fitted["omitted"] = omitted
    return fitted


def replay_capacity(replay_window: int, max_replay_bytes: int, max_event_bytes: int) -> int:
    """The replay window a server can honestly announce (ASP-RES-003, ASP-SES-002): the configured
    count of events, lowered so that that many events of the largest size (`max_event_bytes`)
    fit in `max_replay_bytes`. A session keeping this many events then holds at most
    `max_replay_bytes` of event text, and never refuses a resume within the announced window."""
    return max(0, min(replay_window, max_replay_bytes // max_event_bytes))


def pending_weight(event: Event, max_event_bytes: int) -> int:
    """Bytes a queued, not yet encoded event stands for in the outbox bound: a delta's text (the
    common, cheap case; deltas are split, never shortened), else its wire size, at most
    `max_event_bytes` (a `history`, `tool_call` or `tool_result` is shortened to fit, `fit`)."""
    delta = event.get("delta")
    if isinstance(delta, str):
        return len(delta) + 64
    return min(encoded_size(event), max_event_bytes)


def outbox_overflow(events: int, pending_bytes: int, max_events: int, max_bytes: int) -> str | None:
    """Why a connection's outbox is over its bound (close it 4004, ASP-LIM-005), or None: more than
    `max_events` events, or more than `max_bytes` bytes, queued for a client that is not reading."""
    if events > max_events:
        return "too many pending events"
    if pending_bytes > max_bytes:
        return f"over {max_bytes} pending bytes"
    return None
