"""Idle timeout closes quiet connections with 4003; client pings keep a connection alive."""

from __future__ import annotations

import asyncio
import time


async def test_a_quiet_connection_is_closed_4003_after_the_idle_timeout(make_server, connect):
    server = make_server(idle_timeout_ms=600)
    client = await connect(server, user="hb-a")
    session = await client.expect("session")
    assert session["limits"]["idle_timeout_ms"] == 600
    opened = time.monotonic()
    assert await client.wait_closed(5) == 4003
    assert 0.5 < time.monotonic() - opened < 2.5


async def test_pings_restart_the_idle_timer(make_server, connect):
    server = make_server(idle_timeout_ms=600)
    client = await connect(server, user="hb-b")
    await client.expect("session")
    for number in range(8):  # 1.6 s of pings every 200 ms, well past 600 ms
        await asyncio.sleep(0.2)
        await client.send({"type": "ping", "id": f"p{number}"})
        await client.expect("pong")
    assert client.close_code is None


async def test_a_run_longer_than_the_idle_timeout_is_not_cut(make_server, connect):
    server = make_server(idle_timeout_ms=500)
    client = await connect(server, user="hb-c", conversation_id="new")
    await client.expect("session")
    await client.send({"type": "message", "content": "asp-fixture:slow 12 100"})
    complete = await client.expect("complete", 5)
    assert complete["finish_reason"] == "stop"
    assert await client.wait_closed(3) == 4003  # and the timer starts again after the run
