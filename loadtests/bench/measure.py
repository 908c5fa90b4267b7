"""The measurements of `asp bench`, each a coroutine returning plain numbers."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from spec import SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX

EVENT_BYTES = 96  # about one text_delta of one token on the wire


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


async def open_ws(url: str, token: str | None = None, query: str = "") -> ClientConnection:
    protocols = [SUBPROTOCOL] + ([TOKEN_SUBPROTOCOL_PREFIX + token] if token else [])
    target = url + (("&" if "?" in url else "?") + query if query else "")
    for attempt in range(50):
        try:
            return await connect(
                target,
                subprotocols=[Subprotocol(p) for p in protocols],
                compression=None,
                max_size=None,
                ping_interval=None,
                open_timeout=20,
            )
        except OSError:
            await asyncio.sleep(0.1 * (attempt + 1))
    raise RuntimeError(f"cannot connect to {url}")


# --- 1. the transport floor ----------------------------------------------------------------------


async def transport_events_per_s(bare_url: str, events: int) -> float:
    websocket = await open_ws(bare_url)
    try:
        await websocket.send(f"burst 1000 {EVENT_BYTES}")  # warm-up
        while orjson.loads(await websocket.recv()).get("type") != "done":
            pass
        began = time.perf_counter()
        await websocket.send(f"burst {events} {EVENT_BYTES}")
        received = 0
        while orjson.loads(await websocket.recv()).get("type") != "done":
            received += 1
        return received / (time.perf_counter() - began)
    finally:
        await websocket.close()


# --- 2. the framework floor ------------------------------------------------------------------------


def bare_agent() -> Any:
    """pydantic-ai with an instant FunctionModel and nothing else: the framework at its lightest."""
    from pydantic_ai import Agent
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    async def stream(messages: list[Any], info: AgentInfo) -> AsyncIterator[str]:
        text = str(messages[-1].parts[-1].content)
        count = int(text.split()[-1]) if text.startswith("asp-fixture:text") else 1
        for number in range(count):
            yield f"t{number} "

    return Agent(FunctionModel(stream_function=stream))


def server_agent() -> Any:
    """The reference server's own agent (same offline model, tools, instructions), instant pace."""
    from reference_server.agent.factory import build_agent
    from reference_server.config import Settings

    return build_agent(Settings(jwt_secret=SecretStr("bench-" * 8), token_delay_ms=0, fixtures=True))


async def _framework_run(agent: Any, prompt: str) -> tuple[float, int, float]:
    """(time to first text delta, deltas, total seconds) of one in-process run."""
    from pydantic_ai import PartDeltaEvent, PartStartEvent, TextPart, TextPartDelta

    began = time.perf_counter()
    first: float | None = None
    deltas = 0
    async with agent.run_stream_events(prompt) as events:
        async for event in events:
            text = (
                isinstance(event, PartStartEvent) and isinstance(event.part, TextPart) and event.part.content
            ) or (
                isinstance(event, PartDeltaEvent)
                and isinstance(event.delta, TextPartDelta)
                and event.delta.content_delta
            )
            if text:
                deltas += 1
                if first is None:
                    first = time.perf_counter() - began
    return first or 0.0, deltas, time.perf_counter() - began


async def framework_floor(agent: Any, tokens: int, ttft_samples: int) -> dict[str, Any]:
    """Deltas/s of a long instant stream and TTFT of one-token answers, in process, no network."""
    long_prompt, short_prompt = f"asp-fixture:text {tokens}", "asp-fixture:text 1"
    await _framework_run(agent, long_prompt)  # warm-up
    rates = []
    for _ in range(3):
        _, deltas, seconds = await _framework_run(agent, long_prompt)
        rates.append(deltas / seconds)
    firsts = [(await _framework_run(agent, short_prompt))[0] * 1000 for _ in range(ttft_samples)]
    return {
        "deltas_per_s": statistics.median(rates),
        "ttft_ms": {"p50": percentile(firsts, 0.5), "p99": percentile(firsts, 0.99)},
    }


# --- 3. the reference server -----------------------------------------------------------------------


async def _until_session(websocket: ClientConnection) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = orjson.loads(await websocket.recv())
        if event["type"] == "session":
            return event


async def _stream(websocket: ClientConnection, content: str) -> dict[str, Any]:
    """Send one message; time the first delta, every gap, and the end."""
    began = time.perf_counter()
    await websocket.send(orjson.dumps({"type": "message", "content": content}).decode())
    first: float | None = None
    last: float | None = None
    gaps: list[float] = []
    events = tokens = 0
    while True:
        event = orjson.loads(await websocket.recv())
        now = time.perf_counter()
        events += 1
        if event["type"] == "text_delta":
            tokens += event["delta"].count(" ")
            if first is None:
                first = now - began
            if last is not None:
                gaps.append(now - last)
            last = now
        elif event["type"] == "complete":
            return {
                "ttft_s": first,
                "seconds": now - began,
                "events": events,
                "tokens": tokens,
                "gaps": gaps,
                "finish_reason": event["finish_reason"],
            }


async def server_stream(
    url: str, token_for: Callable[[str], str], tokens: int, ttft_samples: int
) -> dict[str, Any]:
    """One long instant stream (tokens/s), then TTFT samples; `token_for(user)` mints credentials."""
    websocket = await open_ws(url, token_for("bench-stream"), "conversation_id=new")
    try:
        await _until_session(websocket)
        await _stream(websocket, "asp-fixture:text 200")  # warm-up
        runs = [await _stream(websocket, f"asp-fixture:text {tokens}") for _ in range(3)]
    finally:
        await websocket.close()
    # A fresh conversation per sample (no history, as in the framework floor); the connections are
    # opened first so that, like the floor's, the samples are taken back to back.
    firsts = []
    for offset in range(0, ttft_samples, 20):
        batch = [
            await open_ws(url, token_for(f"bench-ttft-{offset + i}"), "conversation_id=new")
            for i in range(min(20, ttft_samples - offset))
        ]
        try:
            for websocket in batch:
                await _until_session(websocket)
            for websocket in batch:
                run = await _stream(websocket, "asp-fixture:text 1")
                firsts.append(run["ttft_s"] * 1000)
        finally:
            await asyncio.gather(*[ws.close() for ws in batch])
    best = max(runs, key=lambda r: r["tokens"] / r["seconds"])
    return {
        "tokens_per_s": statistics.median(r["tokens"] / r["seconds"] for r in runs),
        "events_per_s": statistics.median(r["events"] / r["seconds"] for r in runs),
        "events_per_run": best["events"],
        "ttft_ms": {"p50": percentile(firsts, 0.5), "p99": percentile(firsts, 0.99)},
    }


async def streams_at_pace(url: str, tokens: list[str], pace_tokens: int, interval_ms: int) -> dict[str, Any]:
    """Run len(tokens) concurrent streams of `pace_tokens` tokens, one every interval_ms; pooled ITL.

    The streams start spread over one second, as users' messages arrive, not in one instant."""
    sockets = await asyncio.gather(*[open_ws(url, t, "conversation_id=new") for t in tokens])

    async def stream_after(index: int, websocket: ClientConnection) -> dict[str, Any]:
        await asyncio.sleep(index / len(sockets))
        return await _stream(websocket, f"asp-fixture:slow {pace_tokens} {interval_ms}")

    try:
        await asyncio.gather(*[_until_session(ws) for ws in sockets])
        runs = await asyncio.gather(
            *[stream_after(i, ws) for i, ws in enumerate(sockets)], return_exceptions=True
        )
    finally:
        await asyncio.gather(*[ws.close() for ws in sockets], return_exceptions=True)
    complete = [
        r for r in runs if isinstance(r, dict) and r["finish_reason"] == "stop" and r["tokens"] == pace_tokens
    ]
    gaps = [g * 1000 for r in complete for g in r["gaps"]]
    return {
        "streams": len(tokens),
        "complete": len(complete),
        "itl_p99_ms": percentile(gaps, 0.99) if gaps else None,
        "itl_p50_ms": percentile(gaps, 0.5) if gaps else None,
    }


async def memory_per_connection(served: Any, url: str, tokens: list[str], expect_session: bool) -> float:
    """KiB of server RSS per idle connection, over len(tokens) connections held open."""
    warm = await asyncio.gather(*[open_ws(url, t) for t in tokens[:20]])
    if expect_session:
        await asyncio.gather(*[_until_session(ws) for ws in warm])
    await asyncio.gather(*[ws.close() for ws in warm])
    await asyncio.sleep(1.0)
    before = served.rss_kib()
    sockets: list[ClientConnection] = []
    for start in range(0, len(tokens), 100):
        batch = await asyncio.gather(*[open_ws(url, t) for t in tokens[start : start + 100]])
        if expect_session:
            await asyncio.gather(*[_until_session(ws) for ws in batch])
        sockets.extend(batch)
    await asyncio.sleep(1.5)
    after = served.rss_kib()
    await asyncio.gather(*[ws.close() for ws in sockets], return_exceptions=True)
    return float(after - before) / len(tokens)
