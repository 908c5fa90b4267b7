"""`asp check` against small hostile servers over real sockets: a verdict on the server, citing the
requirement it breaks, never a traceback or a harness error of the kit."""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from conformance.options import CheckOptions
from conformance.outcomes import Outcome
from conformance.report.model import Report
from conformance.report.sarif import to_sarif
from conformance.runner import run_check
from spec.oracle import Oracle
from spec.transcript import EXIT_UNUSABLE
from spec.transcript import run as validate
from tests.support.events import session_event


def session(version: str = "1.1", **limits: int) -> str:
    """A session event that passes the schema, with `limits` over the announced defaults."""
    return json.dumps(
        session_event(version, "ses_" + os.urandom(12).hex(), "conv_" + os.urandom(8).hex(), **limits)
    )


@asynccontextmanager
async def hostile(handler: Callable[[ServerConnection], Awaitable[None]]) -> AsyncIterator[str]:
    """A websockets server on a free port running `handler` per connection; yields its ws:// URL."""
    async with serve(
        handler, "127.0.0.1", 0, subprotocols=["asp.v1"], max_size=None, ping_interval=None
    ) as server:  # type: ignore[list-item]
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws"


@asynccontextmanager
async def raw(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A plain TCP server on a free port (for broken handshakes); yields a ws:// URL to it."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws"


async def check(url: str, *cases: str) -> Report:
    return await asyncio.wait_for(
        run_check(CheckOptions(url=url, tokens=["dummy"], include=list(cases), max_wait_s=5)), 60
    )


def findings(report: Report) -> dict[str, list[str]]:
    """Requirement ID -> messages of every failing finding in the report."""
    found: dict[str, list[str]] = {}
    for result in report.everything:
        for finding in result.findings:
            if not finding.passed:
                found.setdefault(finding.requirement, []).append(finding.message)
    return found


def no_kit_errors(report: Report) -> None:
    assert not [r.case_id for r in report.everything if r.outcome == Outcome.HARNESS_ERROR]


# --- ASP-LIM-011: an event larger than the announced max_event_bytes ------------------------------


def test_the_oracle_holds_every_event_to_the_announced_max_event_bytes():
    big = json.dumps({"type": "pong", "seq": 2, "x-pad": "é" * 40000})  # 40,000 characters, 80,000+ bytes
    oracle = Oracle()
    oracle.feed_text(session(max_event_bytes=65536))
    _, found = oracle.feed_text(big)
    assert [v.requirement for v in found] == ["ASP-LIM-011"] and "65536" in found[0].message
    assert [v.requirement for v in oracle.feed_event({**json.loads(big), "seq": 3})] == ["ASP-LIM-011"]
    older = Oracle()  # a 1.0 server is not held to a 1.1 requirement
    older.feed_text(session("1.0", max_event_bytes=65536))
    assert older.feed_text(big)[1] == []
    unannounced = Oracle()
    unannounced.feed_text(session())
    assert unannounced.feed_text(big)[1] == []


async def test_a_text_delta_over_the_announced_max_event_bytes_fails_asp_lim_011():
    async def handler(ws: ServerConnection) -> None:
        await ws.send(session(max_event_bytes=65536))
        seq = 2
        async for frame in ws:
            message: dict[str, Any] = json.loads(frame)
            events: list[dict[str, Any]] = []
            if message.get("type") == "ping":
                events = [{"type": "pong", **({"id": message["id"]} if "id" in message else {})}]
            elif message.get("type") == "message":
                run = {"run_id": "run_1"}
                events = [
                    {"type": "run_started", **run, "message_id": message["id"], "conversation_id": "c"},
                    {"type": "text_delta", **run, "delta": "x" * 100000},
                    {"type": "complete", **run, "finish_reason": "stop"},
                ]
            for event in events:
                await ws.send(json.dumps({**event, "seq": seq}))
                seq += 1

    async with hostile(handler) as url:
        report = await check(url, "runs.message_starts_a_run")
    no_kit_errors(report)
    assert any("exceeds the announced max_event_bytes 65536" in m for m in findings(report)["ASP-LIM-011"])
    assert report.exit_code() == 1


# --- ASP-TRN-002: a handshake the server breaks off ----------------------------------------------


@pytest.mark.parametrize("answer", [b"", b"SSH-2.0-OpenSSH_9.6\r\n"], ids=["closed", "ssh-banner"])
async def test_a_first_handshake_never_upgraded_is_no_asp_endpoint_not_an_asp_trn_002_failure(answer: bytes):
    """No upgrade on the very first connection (closed mid-way, another protocol's banner): no
    evidence the URL is an ASP endpoint, so no verdict on any requirement."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(answer)
        await writer.drain()
        writer.close()

    async with raw(handler) as url:
        report = await check(url, "runs.ping_pong")
    no_kit_errors(report)
    (probe,) = report.results
    assert probe.requirements == [] and not findings(report), probe
    assert probe.reason.startswith("no ASP endpoint answered at this URL (")
    assert "ASP-TRN-002" not in json.dumps(json.loads(to_sarif(report))["runs"][0]["results"])
    assert {level.verdict for level in report.compliance().values()} == {"not proven"}
    assert report.exit_code() == 1  # as when nothing listens


async def test_a_server_that_upgraded_once_then_refuses_a_valid_upgrade_fails_asp_trn_002():
    """The probe's connection is upgraded; every later handshake is refused with 403 (or broken off)."""
    from websockets.http11 import Request, Response

    upgrades = 0

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        nonlocal upgrades
        upgrades += 1
        return None if upgrades == 1 else connection.respond(403, "no more\n")

    async def handler(ws: ServerConnection) -> None:
        await ws.send(session())
        await ws.wait_closed()

    async with serve(
        handler,
        "127.0.0.1",
        0,
        subprotocols=["asp.v1"],
        process_request=process_request,  # type: ignore[list-item]
    ) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws"
        report = await check(url, "runs.ping_pong")
    no_kit_errors(report)
    assert report.terms is not None
    assert any("refused with HTTP 403" in m for m in findings(report)["ASP-TRN-002"]), findings(report)
    assert report.exit_code() == 1


# --- ASP-TRN-001: a text frame that is not UTF-8 -------------------------------------------------


async def test_a_text_frame_that_is_not_utf8_fails_asp_trn_001_in_every_case_never_a_kit_error():
    async def handler(ws: ServerConnection) -> None:
        await ws.send(session())
        async for _ in ws:
            ws.protocol.send_text(b'{"type":"pong","seq":2,"x":"\xff"}')
            ws.send_data()

    async with hostile(handler) as url:
        report = await check(url, "runs.ping_pong", "runs.message_starts_a_run", "runs.cancel")
    no_kit_errors(report)
    found = findings(report)
    assert "ASP-CLS-001" not in found  # the server's 1007 only answered the kit's close
    assert any("1007" in m for m in found["ASP-TRN-001"])
    assert report.exit_code() == 1


# --- JSON nested deeper than a parser reads --------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


async def test_an_event_nested_past_the_parser_leaves_the_reader_alive_and_the_case_judged():
    """The spec sets no nesting limit: such a frame is unjudged (spec/oracle.py), never a crash of
    the reader, and the case goes on with the frames after it."""

    async def handler(ws: ServerConnection) -> None:
        await ws.send(session())
        seq = 2
        async for frame in ws:
            message = json.loads(frame)
            if message.get("type") == "ping":
                await ws.send(f'{{"type":"pong","seq":{seq},"x-deep":{DEEP}}}')
                answer = {"id": message["id"]} if "id" in message else {}
                await ws.send(json.dumps({"type": "pong", "seq": seq + 1, **answer}))
                seq += 2

    async with hostile(handler) as url:
        report = await check(url, "runs.ping_pong")
    no_kit_errors(report)
    assert [r.outcome for r in report.results] == [Outcome.PASS], [r.reason for r in report.results]


def test_asp_spec_validate_on_a_deeply_nested_input_is_unusable_input_not_a_traceback(tmp_path: Path):
    single, transcript = tmp_path / "single.json", tmp_path / "transcript.jsonl"
    single.write_text(DEEP)
    transcript.write_text(session() + "\n" + f'{{"type":"pong","seq":2,"x-deep":{DEEP}}}\n')
    out = io.StringIO()
    assert validate(str(single), out) == EXIT_UNUSABLE
    assert validate(str(transcript), out) == EXIT_UNUSABLE


# --- what a wait received instead of what it awaited -----------------------------------------------


async def test_a_first_frame_that_is_binary_is_named_when_no_session_comes():
    async def handler(ws: ServerConnection) -> None:
        await ws.send(b"\x00\x01binary garbage")
        await ws.send("{not json")
        await ws.wait_closed()

    async with hostile(handler) as url:
        report = await asyncio.wait_for(
            run_check(
                CheckOptions(url=url, tokens=["t"], include=["runs.ping_pong"], timeout_multiplier=0.2)
            ),
            60,
        )
    probe = report.everything[0]
    assert probe.case_id == "probe.first_connection" and probe.outcome == Outcome.FAIL
    assert "received instead: binary frame, frame the kit cannot parse as a JSON object" in probe.reason
    assert "nothing received" not in probe.reason
    assert probe.duration_s >= 1.0  # it waited for the session (2 s here), and says so
    assert {"ASP-TRN-001", "ASP-SES-001"} <= set(probe.requirements)
