"""The kit against a hostile server: generated frames through the wire reader and the oracle.

    python -m conformance.fuzz --frames 50000 --seed 1 [--socket-frames 2000]

A benchmark, not a timed test: it feeds `conformance.wire.take_frame` (the reader's per-frame
work: transcript, oracle, the event handed to cases) hostile server frames, in connections of
up to `--per-connection` frames each, each connection closed with a hostile code (three in ten
before their last frames, which then arrive after the close). Frames are mutations of the spec's
own examples (spec/examples: valid events and clean transcripts), so they reach every state of
the lifecycle machine: binary frames, invalid UTF-8
(lone surrogates, as a lax transport would hand them over), huge frames, JSON nested past the
parser's depth, wrong types in every member, members dropped, seq going backwards or jumping,
events of other runs, events after close, non-objects, NaN, integers past Python's digit limit.

`--socket-frames N` sends N more of them from a tiny hostile `websockets` server on 127.0.0.1
to the kit's real `AspClient` (text frames with invalid UTF-8 bytes included, then hostile close
codes): the reader task must end cleanly.

Prints one figure: frames fed, exceptions raised by the kit (must be 0), verdicts (per
requirement ID cited, clean, unjudged), peak traced memory (tracemalloc) and peak RSS, seconds.
Exit 0 when the kit raised nothing and every frame got its verdict, else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import sys
import time
import traceback
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from conformance.wire import AspClient, Closed, Transcript, take_frame
from spec import SPEC_DIR
from spec.oracle import CLOSE, Oracle
from spec.registry import close_code, close_codes

Frame = str | bytes

# Sizes are bounded so a run's memory is too: the largest frame is HUGE_MAX characters.
HUGE_MAX = 2 * 1024 * 1024
DEEP_LEVELS = (10, 200, 900, 5_000, 200_000)
# Codes outside the registry (which the fuzz adds to these), None for a drop, and absurd numbers.
HOSTILE_CLOSE_CODES: tuple[int | None, ...] = (
    None,
    0,
    1,
    999,
    1004,
    1005,
    1015,
    2999,
    3000,
    4999,
    5000,
    65535,
    -1,
    2**70,
)


@dataclass
class Tally:
    """What the fuzz saw: frames fed, the kit's exceptions, verdicts by label."""

    frames: int = 0
    judged: int = 0  # frames that ended with a verdict: violations, clean or unjudged
    closes: int = 0
    exceptions: int = 0
    not_events: int = 0  # frames take_frame turned into something that is not an event
    verdicts: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)

    def failed(self, what: str) -> None:
        self.exceptions += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(f"{what}:\n{traceback.format_exc(limit=6)}")


# --- the spec's own examples, the material of every mutation ---------------------------------------


def seed_events() -> list[dict[str, Any]]:
    """Every valid server event of spec/examples/valid."""
    from spec.schemas import server_event_types

    events = []
    for path in sorted((SPEC_DIR / "examples" / "valid").glob("*.json")):
        event = json.loads(path.read_text())
        if isinstance(event, dict) and event.get("type") in server_event_types():
            events.append(event)
    return events


def seed_streams() -> list[list[dict[str, Any]]]:
    """The clean transcripts of spec/examples/transcripts: whole sessions in order."""
    streams = []
    for path in sorted((SPEC_DIR / "examples" / "transcripts").glob("clean-*.jsonl")):
        streams.append([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
    return streams


# --- hostile values and frames -----------------------------------------------------------------


def hostile_value(rng: random.Random) -> Any:
    """A JSON value of the wrong kind for almost any member."""
    pick = rng.randrange(14)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False])
    if pick == 2:
        return rng.choice([0, -1, 2**63, -(2**63) - 1, 2**64 + 7])
    if pick == 3:
        return rng.choice([0.5, -0.0, 1e308, 1.5e-300])
    if pick == 4:
        return ""
    if pick == 5:
        return "x" * rng.choice([1, 300, 70_000])
    if pick == 6:
        return [rng.randrange(10) for _ in range(rng.randrange(4))]
    if pick == 7:
        return {"a": [1, {"b": None}]}
    if pick == 8:
        return "\ud800\udfff\x00\u202e"
    if pick == 9:
        return "run_1\n"
    if pick == 10:
        return [[[]]]
    if pick == 11:
        return {"type": "session"}
    if pick == 12:
        return "x-" + "y" * rng.randrange(1, 40)
    return rng.choice(["session", "complete", "run_started", "tool_call", "error", "history"])


def mutate(event: dict[str, Any], rng: random.Random, seq: int) -> tuple[str, Frame]:
    """One hostile frame made from a valid event; returns (kind, frame)."""
    event = dict(event)
    event["seq"] = seq
    pick = rng.randrange(24)
    if pick < 5:
        return "valid", json.dumps(event)
    if pick < 8:  # a member of the wrong type
        key = rng.choice([*event, "seq", "run_id", "type", "tool_call_id", "capabilities", "limits"])
        event[key] = hostile_value(rng)
        return "wrong_type", json.dumps(event)
    if pick == 8:  # a member dropped
        if event:
            del event[rng.choice(list(event))]
        return "dropped_member", json.dumps(event)
    if pick == 9:
        event["seq"] = seq - rng.randrange(1, 5)
        return "seq_backwards", json.dumps(event)
    if pick == 10:
        event["seq"] = seq + rng.randrange(2, 10**6)
        return "seq_jump", json.dumps(event)
    if pick == 11:
        event["run_id"] = f"run_other_{rng.randrange(5)}"
        return "other_run", json.dumps(event)
    if pick == 12:
        return "binary", rng.randbytes(rng.choice([0, 1, 16, 4096]))
    if pick == 13:  # invalid UTF-8 as a lax transport hands it over: lone surrogates
        raw = json.dumps(event).encode() + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"])
        return "invalid_utf8", raw.decode("utf-8", "surrogateescape")
    if pick == 14:
        return "surrogate_escape", json.dumps({**event, "delta": "\ud800"})
    if pick == 15:
        size = rng.choice([70_000, 1_100_000, HUGE_MAX])
        return "huge", json.dumps({**event, "delta": "h" * size})
    if pick == 16:
        depth = rng.choice(DEEP_LEVELS)
        nested = "[" * depth + "]" * depth
        return "deep", f'{{"type": {json.dumps(event.get("type"))}, "seq": {seq}, "content": {nested}}}'
    if pick == 17:
        return "not_object", rng.choice(["[]", "1", '"session"', "null", "true", "[{}]", "-0", "1e999"])
    if pick == 18:
        text = json.dumps(event)
        return "garbage", rng.choice(
            ["", " ", "\ufeff" + text, text[: max(1, len(text) // 2)], text + text, "\x00", "{", "}" * 3]
        )
    if pick == 19:
        return "non_json_number", json.dumps(event).replace(
            f'"seq": {seq}', rng.choice(['"seq": NaN', '"seq": Infinity', '"seq": -Infinity'])
        )
    if pick == 20:
        return "long_int", json.dumps(event).replace(
            f'"seq": {seq}', '"seq": ' + "9" * rng.choice([20, 5000, 20_000])
        )
    if pick == 21:
        event["type"] = hostile_value(rng)
        return "bad_type", json.dumps(event)
    if pick == 22:
        return "duplicate_keys", json.dumps(event)[:-1] + ', "type": "complete", "seq": -5}'
    return "vendor", json.dumps({**event, "type": "x-" + rng.choice(["a", "", "\u0000", "é" * 3])})


def connection(
    rng: random.Random, singles: list[dict[str, Any]], streams: list[list[dict[str, Any]]], count: int
) -> Iterator[tuple[str, Frame]]:
    """The frames of one hostile connection: a clean session's events, interleaved and mutated."""
    stream = rng.choice(streams)
    for number in range(count):
        base = stream[number] if number < len(stream) and rng.random() < 0.7 else rng.choice(singles + stream)
        yield mutate(base, rng, number + 1)


# --- in-process: the bulk ------------------------------------------------------------------------


def _verdict(tally: Tally, oracle: Oracle, before: int, unjudged: int) -> None:
    tally.judged += 1
    new = oracle.violations[before:]
    if new:
        for requirement in sorted({v.requirement for v in new}):
            tally.verdicts[requirement] += 1
    elif len(oracle.unjudged) > unjudged:
        tally.verdicts["unjudged"] += 1
    else:
        tally.verdicts["clean"] += 1


def in_process(frames: int, seed: int, per_connection: int, tally: Tally) -> None:
    """Feed `frames` hostile frames through `take_frame`, connection by connection."""
    rng = random.Random(seed)
    singles, streams = seed_events(), seed_streams()
    while tally.frames < frames:
        oracle, transcript = Oracle(), Transcript()
        count = min(frames - tally.frames, rng.randrange(1, per_connection + 1))
        closed_after = rng.randrange(count + 1) if rng.random() < 0.3 else count
        for number, (kind, frame) in enumerate(connection(rng, singles, streams, count)):
            if number == closed_after:
                _close(oracle, rng.choice(HOSTILE_CLOSE_CODES + tuple(close_codes())), tally)
            before, unjudged = len(oracle.violations), len(oracle.unjudged)
            tally.frames += 1
            tally.kinds[kind] += 1
            if number >= closed_after:
                tally.kinds["(after close)"] += 1
            try:
                event = take_frame(frame, oracle, transcript)
            except Exception:
                tally.failed(f"take_frame({kind})")
                continue
            if event is not None and not isinstance(event, dict):
                tally.not_events += 1
            _verdict(tally, oracle, before, unjudged)
        if closed_after == count:
            _close(oracle, rng.choice(HOSTILE_CLOSE_CODES + tuple(close_codes())), tally)


def _close(oracle: Oracle, code: int | None, tally: Tally) -> None:
    tally.closes += 1
    try:
        found = oracle.feed_close(code, "\ud800" * 3)
    except Exception:
        tally.failed(f"feed_close({code})")
        return
    tally.verdicts["close " + (found[0].requirement if found else "clean")] += 1


def _utf8(text: str) -> bool:
    """Whether the text encodes as UTF-8 (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- over a real socket: a sample ----------------------------------------------------------------


async def over_socket(frames: int, seed: int, per_connection: int, tally: Tally) -> None:
    """A hostile websockets server on 127.0.0.1 sends at least `frames` frames to the kit's AspClient,
    connection after connection (a connection ends early where a frame is not UTF-8)."""
    from websockets.asyncio.server import ServerConnection, serve

    rng = random.Random(seed + 1)
    singles, streams = seed_events(), seed_streams()
    normal = close_code("normal_closure")
    plans: dict[int, tuple[list[tuple[str, Frame]], int]] = {}

    def plan_for(number: int) -> None:
        plan = list(connection(rng, singles, streams, rng.randrange(1, per_connection + 1)))
        if rng.random() < 0.2:  # invalid UTF-8 in a text frame: the reader must end cleanly
            plan.insert(rng.randrange(len(plan) + 1), ("raw_invalid_utf8", b'{"type": "\xff"}'))
        plans[number] = (plan, rng.choice([*close_codes(), 3000, 4999]))

    async def hostile(websocket: ServerConnection) -> None:
        plan, code = (
            plans.pop(int(websocket.request.path.rsplit("/", 1)[-1])) if websocket.request else ([], normal)
        )
        with contextlib.suppress(Exception):
            for kind, frame in plan:
                if isinstance(frame, str):
                    await websocket.send(frame.encode("utf-8", "surrogatepass"), text=True)
                    if not _utf8(frame):  # the client fails the connection here (1007)
                        break
                elif kind == "raw_invalid_utf8":
                    await websocket.send(frame, text=True)
                    break
                else:
                    await websocket.send(frame)
            await websocket.close(code)

    async with serve(hostile, "127.0.0.1", 0, max_size=None, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        received, number = 0, 0
        while received < frames and number < frames:  # a connection may end at its first frame
            number += 1
            plan_for(number)
            try:
                client = await AspClient.open(f"ws://127.0.0.1:{port}/fuzz/{number}", timeout=10)
            except Exception:
                tally.failed("AspClient.open")
                continue
            try:
                while True:
                    await client.recv(timeout=10)
            except Closed:
                pass
            except Exception:
                tally.failed("AspClient.recv")
            with contextlib.suppress(Exception):
                await client.close()
            if client._reader.done() and not client._reader.cancelled() and client._reader.exception():
                tally.exceptions += 1
                tally.first_errors.append(f"reader task: {client._reader.exception()!r}")
            oracle = client.oracle
            received += oracle.frames
            tally.frames += oracle.frames
            tally.closes += 1
            tally.kinds["socket"] += oracle.frames
            cited: dict[int, set[str]] = {}
            for violation in oracle.violations:
                if violation.requirement == CLOSE:  # the close, not a frame
                    tally.verdicts["socket:close " + CLOSE] += 1
                else:
                    cited.setdefault(violation.index, set()).add(violation.requirement)
            unjudged = {int(note.split("#")[1].split(":")[0]) for note in oracle.unjudged}
            for index in range(1, oracle.frames + 1):
                tally.judged += 1
                labels = cited.get(index) or ({"unjudged"} if index in unjudged else {"clean"})
                for label in labels:
                    tally.verdicts["socket:" + label] += 1


@contextlib.asynccontextmanager
async def hostile_server(seed: int = 1) -> AsyncIterator[str]:
    """An ASP endpoint on 127.0.0.1 (a free port) that greets with a valid `session` (the spec's
    example, with fixtures, a 3 s idle timeout and 20 connections) and answers every client
    message with one to five hostile frames; yields its ws:// URL. For `asp check` against a
    server that breaks everything: every case must end in a verdict, never a harness error."""
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.typing import Subprotocol

    from spec import SUBPROTOCOL

    session = json.loads((SPEC_DIR / "examples" / "valid" / "session.json").read_text())
    session["capabilities"] = ["history", "cancel", "resume", "fixtures"]
    session["limits"].update(idle_timeout_ms=3000, heartbeat_interval_ms=1000, max_connections=20)
    singles, streams = seed_events(), seed_streams()
    connections = 0

    async def answer(websocket: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        rng = random.Random(seed * 1_000_003 + connections)
        frames = connection(rng, singles, streams, 10**9)
        with contextlib.suppress(Exception):
            await websocket.send(json.dumps(session))
            async for _ in websocket:
                for _ in range(rng.randrange(1, 6)):
                    _, frame = next(frames)
                    if isinstance(frame, bytes) or _utf8(frame):  # invalid UTF-8 ends a connection
                        await websocket.send(frame)

    async with serve(
        answer, "127.0.0.1", 0, subprotocols=[Subprotocol(SUBPROTOCOL)], max_size=None, compression=None
    ) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws/chat"


# --- the figure ------------------------------------------------------------------------------------


def run(frames: int, seed: int, per_connection: int, socket_frames: int) -> tuple[Tally, dict[str, float]]:
    """Run the fuzz; returns the tally and the figures (seconds, peak traced MiB, peak RSS MiB)."""
    tally = Tally()
    started = time.monotonic()
    tracemalloc.start()
    in_process(frames, seed, per_connection, tally)
    if socket_frames:
        asyncio.run(over_socket(socket_frames, seed, per_connection, tally))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    figures = {
        "seconds": round(time.monotonic() - started, 1),
        "peak_traced_mib": round(peak / 2**20, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    return tally, figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=50_000, help="hostile frames fed in-process")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--per-connection", type=int, default=400, help="most frames per connection")
    parser.add_argument("--socket-frames", type=int, default=0, help="frames sent over a real socket too")
    args = parser.parse_args(argv)
    tally, figures = run(args.frames, args.seed, args.per_connection, args.socket_frames)
    print(
        f"frames {tally.frames} (closes {tally.closes}), exceptions {tally.exceptions}, "
        f"with a verdict {tally.judged}, no verdict {tally.frames - tally.judged}, "
        f"not an event {tally.not_events}, peak traced {figures['peak_traced_mib']} MiB, "
        f"peak RSS {figures['peak_rss_mib']} MiB, {figures['seconds']} s"
    )
    print("kinds: " + ", ".join(f"{k} {n}" for k, n in sorted(tally.kinds.items())))
    print("verdicts: " + ", ".join(f"{k} {n}" for k, n in sorted(tally.verdicts.items())))
    for error in tally.first_errors:
        print(error, file=sys.stderr)
    return 0 if tally.exceptions == 0 and tally.not_events == 0 and tally.judged == tally.frames else 1


if __name__ == "__main__":
    raise SystemExit(main())
