"""No server event exceeds the max_event_bytes the session announces (ASP-LIM-011, defect 15)."""

from __future__ import annotations

import json

from websockets.asyncio.client import connect as ws_connect

from conformance.context import text_of
from conformance.wire import with_query
from tests.support.server import ServerProcess

MIB = 1_048_576


async def test_defect_15_a_huge_conversation_arrives_within_the_default_one_mib(
    server: ServerProcess, connect
):
    client = await connect(server, user="size-huge", conversation_id="new")
    session = await client.expect("session")
    assert session["limits"]["max_event_bytes"] == MIB
    await client.send({"type": "message", "content": "asp-fixture:bulk 24 65536"})  # 1.5 MiB of text
    run = await client.collect_run(timeout=60)
    streamed = text_of(run)
    assert streamed == ("b" * 65535 + " ") * 24  # deltas split, never truncated
    sizes = [
        len(frame.text.encode())
        for frame in client.transcript.frames
        if frame.direction == "recv" and frame.text
    ]
    assert max(sizes) <= MIB
    await client.close()
    # a client with the common 1 MiB frame limit (the Python websockets default) reads the history
    url = with_query(server.url, token=server.token("size-huge"), conversation_id=session["conversation_id"])
    async with ws_connect(url, subprotocols=["asp.v1"], max_size=MIB) as plain:  # type: ignore[list-item]
        assert json.loads(await plain.recv())["type"] == "session"
        frame = await plain.recv()
    history = json.loads(frame)
    assert history["type"] == "history" and len(frame.encode()) <= MIB
    (entry,) = history["messages"]
    assert (entry["role"], entry["truncated"]) == ("assistant", True)
    assert streamed.startswith(entry["content"]) and len(entry["content"]) > MIB // 2
    assert (history["truncated"], history["omitted"]) == (True, 1)  # the user entry did not fit


async def test_every_event_keeps_to_a_smaller_announced_limit(make_server, connect):
    server = make_server(max_event_bytes=65536)
    client = await connect(server, user="size-small", conversation_id="new")
    assert (await client.expect("session"))["limits"]["max_event_bytes"] == 65536
    for prompt in ("asp-fixture:bulk 3 65536", "asp-fixture:text 20000", "asp-fixture:tool"):
        await client.send({"type": "message", "content": prompt})
        await client.collect_run(timeout=60)
    await client.close()
    again = await connect(server, user="size-small", conversation_id=client.events[0]["conversation_id"])
    history = await again.expect("history")
    assert history["truncated"] is True and history["omitted"] >= 1
    assert [m["role"] for m in history["messages"]][-3:] == ["user", "tool", "assistant"]  # the newest fit
    for connection in (client, again):
        sizes = [
            len(f.text.encode()) for f in connection.transcript.frames if f.direction == "recv" and f.text
        ]
        assert max(sizes) <= 65536
