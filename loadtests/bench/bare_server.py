"""The bare stack: FastAPI + uvicorn with the reference server's WebSocket settings, no ASP.

`python -m loadtests.bench.bare_server` prints its URL. A client that sends "burst N SIZE" gets N
JSON events of SIZE bytes in a tight loop (the transport floor); an application ping
(`{"type": "ping", "id": ...}`) gets its pong, as ASP's would (the connection-scale floor); a
message (`{"type": "message", "content": ...}`) is answered by the reference server's own agent,
each text delta sent as a `text_delta` event the moment pydantic-ai yields it, then a `complete`
(the framework floor: pydantic-ai served by the simplest endpoint this stack allows, no session,
history, sequencing or replay); any other client is just held open (the memory floor). It serves
under the reference server's garbage-collector settings (`collector_for_serving`).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from pydantic import SecretStr
from pydantic_ai import Agent, AgentStreamEvent, PartDeltaEvent, PartStartEvent, TextPart, TextPartDelta

from loadtests.bench.measure import EVENT_LOOP
from reference_server.agent.factory import build_agent
from reference_server.app import collector_for_serving
from reference_server.config import Settings
from reference_server.server import bind


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    server_agent()  # built before the freeze, as the reference server builds its agent
    with collector_for_serving():  # the reference server's garbage-collector settings: same conditions
        yield


app = FastAPI(lifespan=lifespan)
_agent: list[Agent[None, str | None]] = []  # built at start-up (lifespan), before the collector's freeze


def server_agent() -> Agent[None, str | None]:
    """The reference server's own agent (same offline model, tools, instructions), instant pace."""
    if not _agent:
        _agent.append(
            build_agent(Settings(jwt_secret=SecretStr("bench-" * 8), token_delay_ms=0, fixtures=True))
        )
    return _agent[0]


def text_of(event: Any) -> str:
    """The text a pydantic-ai stream event adds to the answer ("" for any other event)."""
    if isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
        return event.delta.content_delta
    if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
        return event.part.content
    return ""


@app.websocket("/ws")
async def endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    seq = 0
    try:
        while True:
            text = await websocket.receive_text()
            if text.startswith("burst "):
                _, count, size = text.split()
                await _burst(websocket, int(count), int(size))
            elif text.startswith("{"):
                received = orjson.loads(text)
                if received.get("type") == "message":
                    seq = await _answer(websocket, str(received.get("content", "")), seq)
                    continue
                seq += 1
                await websocket.send_text(
                    orjson.dumps({"type": "pong", "seq": seq, "id": received.get("id")}).decode()
                )
    except WebSocketDisconnect:
        return


async def _answer(websocket: WebSocket, prompt: str, seq: int) -> int:
    """Run the agent on `prompt` in this task (as the reference server drives its runs: agent.run
    with an event stream handler), sending each text delta at once; returns the last seq sent."""
    run_id = "run_" + secrets.token_hex(8)

    async def on_events(_: Any, events: AsyncIterable[AgentStreamEvent]) -> None:
        nonlocal seq
        async for event in events:
            delta = text_of(event)
            if delta:
                seq += 1
                await websocket.send_text(
                    orjson.dumps(
                        {"type": "text_delta", "seq": seq, "run_id": run_id, "delta": delta}
                    ).decode()
                )

    await server_agent().run(prompt, event_stream_handler=on_events)
    seq += 1
    await websocket.send_text(
        orjson.dumps({"type": "complete", "seq": seq, "run_id": run_id, "finish_reason": "stop"}).decode()
    )
    return seq


async def _burst(websocket: WebSocket, count: int, size: int) -> None:
    template = {"type": "text_delta", "seq": 0, "run_id": "run_0123456789abcdef", "delta": ""}
    padding = max(1, size - len(orjson.dumps(template)))
    template["delta"] = "x" * padding
    for seq in range(1, count + 1):
        template["seq"] = seq
        await websocket.send_text(orjson.dumps(template).decode())
    await websocket.send_text('{"type":"done"}')


def main() -> None:
    sock = bind("127.0.0.1", 0)
    print(f"bare server listening on ws://127.0.0.1:{sock.getsockname()[1]}/ws", flush=True)
    config = uvicorn.Config(
        app,
        loop=EVENT_LOOP,  # the server's (run.server_env)
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        log_level="warning",
        ws_ping_interval=15,
        ws_ping_timeout=15,
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
