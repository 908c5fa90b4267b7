"""Structured logs carry context; tracing is off by default and emits spans when configured."""

from __future__ import annotations

import json

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
