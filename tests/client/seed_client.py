"""A small client in the manner of the seed template, behind the driver contract: it reconnects
every 3 s after any close (auth failures included), never resumes, and shows every delta it gets.
The kit's self-test expects asp check-client to catch it."""

import asyncio
import json
import os
import sys

import websockets

RETRY_S = 3.0


def out(record: dict) -> None:
    print(json.dumps(record), flush=True)


async def connection(outbox: asyncio.Queue) -> None:
    token = os.environ["ASP_TOKEN"]
    protocols = ["asp.v1", "asp.token." + token]
    async with websockets.connect(os.environ["ASP_URL"], subprotocols=protocols) as ws:
        texts: dict = {}
        sender = asyncio.create_task(forward(ws, outbox))
        try:
            async for frame in ws:
                event = json.loads(frame)
                kind, run = event.get("type"), event.get("run_id")
                if kind == "session":
                    out({"event": "state", "state": "open"})
                elif kind == "text_delta":
                    texts[run] = texts.get(run, "") + event["delta"]
                elif kind == "complete":
                    out(
                        {
                            "event": "run",
                            "run_id": run,
                            "text": texts.pop(run, ""),
                            "finish_reason": event["finish_reason"],
                        }
                    )
                elif kind == "error":
                    out({"event": "error", "code": event["code"]})
        finally:
            sender.cancel()


async def forward(ws, outbox: asyncio.Queue) -> None:
    while True:
        await ws.send(json.dumps({"type": "message", "content": await outbox.get()}))


async def main() -> None:
    outbox: asyncio.Queue = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def read_stdin() -> None:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command = json.loads(line)
            if "send" in command:
                outbox.put_nowait(command["send"])
        os._exit(0)

    reader = asyncio.create_task(read_stdin())
    while not reader.done():
        try:
            await connection(outbox)
        except Exception as exc:
            code = getattr(getattr(exc, "rcvd", None), "code", 1006)
            out({"event": "state", "state": "reconnecting", "code": code})
        await asyncio.sleep(RETRY_S)


asyncio.run(main())
