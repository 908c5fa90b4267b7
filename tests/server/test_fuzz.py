"""A bounded fuzz of the reference server: over 10,000 generated bad client frames, each answered as
the spec says, no connection dropped except by the spec's own closes, every user's history intact,
the server's memory flat across rounds.

Frames: the kit's mutation operators (conformance/generate.py, from the schemas), each also sent
fragmented and with a deeply nested vendor member, plus families of depth, size, encoding, binary
and fragment variants. Run it alone with `pytest -s tests/server/test_fuzz.py` to see the figures.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conformance.generate import invalid_probes
from conformance.wire import AspClient, Closed
from spec import jsondepth
from spec.registry import close_code
from spec.resources import schema_documents
from tests.support.server import ServerProcess

ROUNDS = 5
USERS = 8
KIT_PROBES = 2_000  # hypothesis draws are the slow part: each kit probe is also sent in two variants
MAX_BYTES = 65_536
IDENTIFIER = re.compile(schema_documents()["common"]["$defs"]["identifier"]["pattern"])
TOO_BIG = close_code("message_too_big")
NOT_UTF8 = close_code("invalid_payload")
RSS_GROWTH_LIMIT = 8 * 1024 * 1024  # from the end of round 2 (warm) to the end of the last round
SESSION_TTL_MS = 300


@dataclass(frozen=True)
class Frame:
    """One frame (or message in fragments) and the answer the spec prescribes for it."""

    payload: str | bytes | list[str] | list[bytes]
    text: bool  # sent as a text message (bytes then are raw, possibly invalid, UTF-8)
    expect: str  # an error code, "pong", or "close"
    message_id: str | None = None  # the error's message_id (ASP-ERR-012), or the pong's id
    close: int | None = None
    family: str = ""


def client_id(frame: str) -> str | None:
    """The id an error must carry: the client's, when it is a valid identifier (ASP-ERR-012)."""
    try:
        data = jsondepth.loads(frame)
    except (ValueError, RecursionError):
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and IDENTIFIER.fullmatch(value) else None


def fragments(text: str, rng: random.Random) -> list[str]:
    if len(text) < 4:
        return [text]
    cuts = sorted(rng.sample(range(1, len(text)), min(3, len(text) - 1)))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def kit_frames(rng: random.Random) -> list[Frame]:
    """The kit's operators, each probe as is, fragmented, and with a deep vendor member."""
    frames: list[Frame] = []
    deep = "[" * 2000 + "]" * 2000
    for probe in invalid_probes(KIT_PROBES, random_seed=11):
        if isinstance(probe.frame, bytes):
            frames.append(Frame(probe.frame, False, probe.expected_code, family="kit"))
            continue
        expected_id = None if probe.expected_code == "invalid_json" else client_id(probe.frame)
        frames.append(Frame(probe.frame, True, probe.expected_code, expected_id, family="kit"))
        frames.append(
            Frame(fragments(probe.frame, rng), True, probe.expected_code, expected_id, family="kit+fragments")
        )
        stripped = probe.frame.rstrip()
        if probe.expected_code != "invalid_json" and stripped.endswith("}") and stripped != "{}":
            nested = stripped[:-1] + ', "x-deep": ' + deep + "}"
            frames.append(Frame(nested, True, probe.expected_code, expected_id, family="kit+depth"))
    return frames


def nest(depth: int, rng: random.Random, leaf: str = "1") -> str:
    opening = "".join(rng.choice(["[", '{"k":']) for _ in range(depth))
    closing = "".join("]" if o == "[" else "}" for o in reversed(opening.replace('{"k":', "{")))
    return opening + leaf + closing


def depth_frames(rng: random.Random, count: int) -> list[Frame]:
    frames = []
    for number in range(count):
        depth = rng.choice([2, 10, 100, 500, 1000, 1024, 1025, 3000, 8000])
        value = nest(depth, rng)
        where = rng.choice(["content", "id", "top", "type", "vendor", "run_id"])
        mid = f"d{number}"
        if where == "content":
            frames.append(
                Frame(f'{{"type":"message","id":"{mid}","content":{value}}}', True, "invalid_message", mid)
            )
        elif where == "id":
            frames.append(Frame(f'{{"type":"message","id":{value},"content":"x"}}', True, "invalid_message"))
        elif where == "top":  # an array is not an object; an object without a type has no known type
            frames.append(Frame(value, True, "invalid_json" if value.startswith("[") else "unknown_type"))
        elif where == "type":
            frames.append(Frame(f'{{"type":{value},"id":"{mid}"}}', True, "unknown_type", mid))
        elif where == "run_id":
            frames.append(
                Frame(f'{{"type":"cancel","id":"{mid}","run_id":{value}}}', True, "invalid_message", mid)
            )
        else:
            frames.append(Frame(f'{{"type":"ping","id":"{mid}","x-v":{value}}}', True, "pong", mid))
        frames[-1] = Frame(**{**frames[-1].__dict__, "family": "depth"})
    return frames


def padded_ping(size: int, ping_id: str) -> str:
    empty = json.dumps({"type": "ping", "id": ping_id, "x-pad": ""})
    return json.dumps({"type": "ping", "id": ping_id, "x-pad": "a" * (size - len(empty))})


def size_frames(rng: random.Random, count: int) -> list[Frame]:
    frames = []
    for number in range(count):
        kind = rng.choice(
            ["max", "max-1", "max+1", "json-at-max", "binary+1", "fragments+1", "fragments-max"]
        )
        pid = f"s{number}"
        if kind in ("max", "max-1"):
            frame = padded_ping(MAX_BYTES - (kind == "max-1"), pid)
            frames.append(Frame(frame, True, "pong", pid, family="size"))
        elif kind == "max+1":
            frames.append(Frame(padded_ping(MAX_BYTES + 1, pid), True, "close", close=TOO_BIG, family="size"))
        elif kind == "json-at-max":
            frames.append(Frame("{" * MAX_BYTES, True, "invalid_json", family="size"))
        elif kind == "binary+1":
            frames.append(Frame(bytes(MAX_BYTES + 1), False, "close", close=TOO_BIG, family="size"))
        elif kind == "fragments+1":
            parts = fragments(padded_ping(MAX_BYTES + 1, pid), rng)
            frames.append(Frame(parts, True, "close", close=TOO_BIG, family="size"))
        else:
            parts = fragments(padded_ping(MAX_BYTES, pid), rng)
            frames.append(Frame(parts, True, "pong", pid, family="size"))
    return frames


INVALID_UTF8 = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80", b"\xf4\x90\x80\x80", b"\xfe\xfe"]


def encoding_frames(rng: random.Random, count: int) -> list[Frame]:
    frames = []
    for number in range(count):
        kind = rng.choice(
            ["invalid", "invalid-fragment", "bom", "lone-surrogate", "nul-id", "emoji-id", "latin1"]
        )
        bad = rng.choice(INVALID_UTF8)
        mid = f"e{number}"
        if kind == "invalid":
            payload = b'{"type":"ping","id":"' + bad + b'"}'
            frames.append(Frame(payload, True, "close", close=NOT_UTF8, family="encoding"))
        elif kind == "invalid-fragment":
            frames.append(
                Frame(
                    [b'{"type":"pi', bad[:1], bad[1:] + b'ng"}'],
                    True,
                    "close",
                    close=NOT_UTF8,
                    family="encoding",
                )
            )
        elif kind == "bom":
            frames.append(Frame('\ufeff{"type":"ping"}', True, "invalid_json", family="encoding"))
        elif kind == "lone-surrogate":
            frames.append(Frame('{"type":"ping","id":"\\ud800"}', True, "invalid_message", family="encoding"))
        elif kind == "nul-id":
            frames.append(
                Frame(
                    '{"type":"message","id":"a\\u0000b","content":"x"}',
                    True,
                    "invalid_message",
                    family="encoding",
                )
            )
        elif kind == "emoji-id":
            frames.append(
                Frame(
                    f'{{"type":"message","id":"{mid}\U0001f600","content":""}}',
                    True,
                    "invalid_message",
                    family="encoding",
                )
            )
        else:
            frames.append(
                Frame('{"type":"pïng","id":"' + mid + '"}', True, "unknown_type", mid, family="encoding")
            )
    return frames


def binary_frames(rng: random.Random, count: int) -> list[Frame]:
    frames = []
    for _ in range(count):
        payload = rng.randbytes(rng.choice([0, 1, 7, 100, 4096]))
        if rng.random() < 0.3:
            payload = b'{"type":"ping"}'  # JSON in a binary frame is still a binary frame
        frames.append(Frame(payload, False, "unsupported_frame", family="binary"))
    return frames


def all_frames(seed: int) -> list[Frame]:
    rng = random.Random(seed)
    frames = kit_frames(rng)
    frames += depth_frames(rng, 2_000)
    frames += size_frames(rng, 300)
    frames += encoding_frames(rng, 1_200)
    frames += binary_frames(rng, 1_000)
    rng.shuffle(frames)
    return frames


@dataclass
class Tally:
    frames: int = 0
    answered: int = 0
    spec_closes: int = 0
    wrong: int = 0
    dropped: int = 0
    problems: list[str] | None = None

    def problem(self, text: str) -> None:
        if self.problems is None:
            self.problems = []
        if len(self.problems) < 20:
            self.problems.append(text)


async def open_client(server: ServerProcess, user: str, conversation: str) -> AspClient:
    client = await AspClient.open(server.url, token=server.token(user), conversation_id=conversation)
    await client.expect("session")
    await client.expect("history")
    return client


async def send(client: AspClient, frame: Frame) -> None:
    payload = frame.payload
    if isinstance(payload, list):
        await client.websocket.send(payload, text=frame.text)  # type: ignore[arg-type]
    elif isinstance(payload, bytes):
        await client.websocket.send(payload, text=frame.text)
    else:
        await client.send(payload)


async def fuzz_user(
    server: ServerProcess, user: str, conversation: str, frames: list[Frame], tally: Tally
) -> None:
    client = await open_client(server, user, conversation)
    for frame in frames:
        tally.frames += 1
        await send(client, frame)
        try:
            answer = await client.recv(15)
        except Closed:
            if frame.expect == "close" and client.close_code == frame.close:
                tally.spec_closes += 1
            else:
                tally.dropped += 1
                tally.problem(f"{frame.family}: closed {client.close_code} for {str(frame.payload)[:120]!r}")
            client.transcript.frames.clear()
            client = await open_client(server, user, conversation)
            continue
        if frame.expect == "pong":
            ok = answer.get("type") == "pong" and answer.get("id") == frame.message_id
        elif frame.expect == "close":
            ok = False
        else:
            ok = (
                answer.get("type") == "error"
                and answer.get("code") == frame.expect
                and answer.get("message_id") == frame.message_id
                and "run_id" not in answer
            )
        if ok:
            tally.answered += 1
        else:
            tally.wrong += 1
            shown = str(frame.payload)[:160]
            tally.problem(
                f"{frame.family}: expected {frame.expect} {frame.message_id}, got {answer} for {shown!r}"
            )
    if client.violations:
        tally.wrong += len(client.violations)
        tally.problem(f"oracle: {client.violations[:3]}")
    await client.close()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def history_of(server: ServerProcess, user: str, conversation: str) -> list[dict[str, Any]]:
    async with await AspClient.open(
        server.url, token=server.token(user), conversation_id=conversation
    ) as client:
        await client.expect("session")
        return list((await client.expect("history"))["messages"])


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory):
    settings = {
        "ASP_MAX_MESSAGE_BYTES": str(MAX_BYTES),
        "ASP_MAX_CONNECTIONS": str(USERS * 2),
        "ASP_SESSION_TTL_MS": str(
            SESSION_TTL_MS
        ),  # sessions the spec's closes leave behind expire between rounds
    }
    process = ServerProcess(database=tmp_path_factory.mktemp("fuzz") / "asp.db", settings=settings).start()
    yield process
    process.stop()


async def test_ten_thousand_bad_frames_are_each_answered_and_cost_nothing(fuzzed: ServerProcess):
    started = time.monotonic()
    users = [f"fuzz-{number}" for number in range(USERS)]
    conversations = {}
    for user in users:  # each user has a stored exchange before the fuzz
        async with await AspClient.open(
            fuzzed.url, token=fuzzed.token(user), conversation_id="new"
        ) as client:
            conversations[user] = (await client.expect("session"))["conversation_id"]
            await client.send({"type": "message", "content": f"asp-fixture:text 3 for {user}"})
            await client.collect_run()
    before = {user: await history_of(fuzzed, user, conversations[user]) for user in users}

    frames = all_frames(seed=2026)
    assert len(frames) >= 10_000
    per_round = -(-len(frames) // ROUNDS)
    tally, figures = Tally(), []
    for number in range(ROUNDS):
        chunk = frames[number * per_round : (number + 1) * per_round]
        await asyncio.gather(
            *[
                fuzz_user(fuzzed, user, conversations[user], chunk[index::USERS], tally)
                for index, user in enumerate(users)
            ]
        )
        await asyncio.sleep(SESSION_TTL_MS / 1000 + 0.5)
        figures.append((number + 1, tally.frames, tally.dropped, rss_bytes(fuzzed.pid)))
    after = {user: await history_of(fuzzed, user, conversations[user]) for user in users}
    took = time.monotonic() - started

    for round_number, sent, dropped, rss in figures:
        print(
            f"round {round_number}: {sent} frames sent, {dropped} dropped, server RSS {rss / 2**20:.1f} MiB"
        )
    print(
        f"fuzz: {tally.frames} frames, {tally.answered} answered as the spec says, "
        f"{tally.spec_closes} spec closes (1007/1009), {tally.wrong} wrong answers, "
        f"{tally.dropped} dropped, {took:.1f} s"
    )
    assert tally.frames >= 10_000
    assert (tally.wrong, tally.dropped) == (0, 0), tally.problems
    assert tally.answered + tally.spec_closes == tally.frames
    assert after == before  # every user's history intact
    assert fuzzed.process is not None and fuzzed.process.poll() is None
    for crash in ("Exception in ASGI application", "session pump failed", "RecursionError", "run failed"):
        assert crash not in fuzzed.logs
    assert figures[-1][3] - figures[1][3] <= RSS_GROWTH_LIMIT, figures
