"""The bare stack: FastAPI + uvicorn with the reference server's WebSocket settings, no ASP.

`python -m loadtests.bench.bare_server` prints its URL. A client that sends "burst N SIZE" gets N
JSON events of SIZE bytes in a tight loop (the transport floor); an application ping
(`{"type": "ping", "id": ...}`) gets its pong, as ASP's would (the connection-scale floor); any
other client is just held open (the memory floor).
"""

from __future__ import annotations

import orjson
import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from reference_server.server import bind

app = FastAPI()


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
                seq += 1
                ping = orjson.loads(text)
                await websocket.send_text(
                    orjson.dumps({"type": "pong", "seq": seq, "id": ping.get("id")}).decode()
                )
    except WebSocketDisconnect:
        return


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
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        log_level="warning",
        ws_ping_interval=15,
        ws_ping_timeout=15,
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
