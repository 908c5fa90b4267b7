"""Structured logs carry context; tracing is off by default and emits spans when configured."""

from __future__ import annotations

import json
import logging

import pytest

from reference_server import logs
from reference_server.logs import NoConnectionLines
from tests.support.server import ServerProcess


async def test_tracing_is_off_by_default(server: ServerProcess, connect):
    client = await connect(server, user="obs-off", conversation_id="new")
    await client.send({"type": "message", "content": "asp-fixture:text 2"})
    await client.collect_run()
    assert '"name": "asp.run"' not in server.logs


async def test_console_tracing_emits_a_span_per_run_and_connection(make_server, connect):
    server = make_server(tracing="console")
    client = await connect(server, user="obs-on", conversation_id="new")
    await client.send({"type": "message", "content": "asp-fixture:text 2"})
    run = await client.collect_run()
    await client.close()
    server.stop()
    assert '"name": "asp.run"' in server.logs
    assert run[0]["run_id"] in server.logs
    assert '"name": "asp.connection"' in server.logs


async def test_json_logs_are_one_object_per_line_with_session_context(make_server, connect):
    server = make_server(log_json="true")
    client = await connect(server, user="obs-json")
    session = await client.expect("session")
    await client.close()
    server.stop()
    records = [json.loads(line) for line in server.output if line.startswith("{")]
    opened = [r for r in records if r["message"] == "session opened"]
    assert opened and opened[0]["user"] == "obs-json" and opened[0]["session"] == session["session_id"]


async def test_json_logs_never_carry_tokens(make_server, connect):
    server = make_server(log_json="true")
    token = server.token("obs-json-token")
    await (await connect(server, token=token)).expect("session")
    await (await connect(server, token=server.token("obs-json-sub"), token_in="subprotocol")).expect(
        "session"
    )
    server.stop()
    assert "token=[REDACTED]" in server.logs
    assert token not in server.logs and token.split(".")[2] not in server.logs
    for line in server.output:
        if line.startswith("{"):
            json.loads(line)  # redaction keeps every line valid JSON


async def test_plain_logs_escape_control_characters_of_client_supplied_values(make_server, connect):
    """A token's `sub` with CR, LF and NUL cannot end a log line and forge the next one: each
    control character is written as an escape (ASP-SEC-001's logs; attack sub_unicode_ctrl)."""
    server = make_server()
    forged = "eve\n\r\x00INFO fake log line\u2028"
    client = await connect(server, token=server.token(forged))
    await client.expect("session")
    await client.close()
    server.stop()
    assert "user=eve\\x0a\\x0d\\x00INFO fake log line\\u2028" in server.logs
    assert not any(line.lstrip("\r\x00").startswith("INFO fake") for line in server.output)
    assert "\x00" not in server.logs and "\u2028" not in server.logs


async def test_access_log_off_keeps_the_session_lines_and_drops_the_handshake_lines(make_server, connect):
    """ASP_ACCESS_LOG=false: no line per WebSocket handshake or close from uvicorn or websockets
    (their WebSocket access log, logged on uvicorn.error); the server's own session lines stay.
    On (the default), the handshake line is there, token redacted."""
    quiet = make_server(access_log="false")
    await (await connect(quiet, user="obs-quiet")).expect("session")
    loud = make_server(database=quiet.database.with_name("loud.db"))
    await (await connect(loud, user="obs-loud")).expect("session")
    quiet.stop()
    loud.stop()
    assert "session opened user=obs-quiet" in quiet.logs and "session detached" in quiet.logs
    assert '"WebSocket /' not in quiet.logs and "connection open" not in quiet.logs
    assert '"WebSocket /' in loud.logs and "[accepted]" in loud.logs and "connection open" in loud.logs
    assert "token=[REDACTED]" in loud.logs


def test_the_connection_lines_filter_drops_info_only():
    """A warning or error on uvicorn.error passes whatever its text; so does any other INFO line."""
    drop = NoConnectionLines()

    def record(level: int, msg: str) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", level, __file__, 1, msg, None, None)

    assert not drop.filter(record(logging.INFO, "connection open"))
    assert not drop.filter(record(logging.INFO, '%s - "WebSocket %s" [accepted]'))
    assert drop.filter(record(logging.WARNING, "connection open"))
    assert drop.filter(record(logging.ERROR, "connection closed"))
    assert drop.filter(record(logging.INFO, "Started server process [%d]"))


@pytest.mark.parametrize(
    "text",
    [
        "session opened",
        "GET /ws/chat?token=abc.def.ghi&x=1",
        "offered asp.v1, asp.token.eyJhbGciOi.eyJzdWIi.c2ln",
        "authorization: BEARER abc.def",
        "authorization: bearer\tabc",
        "a bare eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig in a message",
        "eyJ too short.x.y",
        "tokens= and token = and Bearer",
        "",
    ],
)
def test_redact_skips_the_patterns_only_when_none_can_match(text):
    """The gate before the four substitutions changes nothing: same text as applying them all."""
    expected = text
    for pattern, replacement in logs._PATTERNS:
        expected = pattern.sub(replacement, expected)
    assert logs.redact(text) == expected
