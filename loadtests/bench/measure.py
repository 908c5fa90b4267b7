"""The client side of `asp bench`: one coroutine per measurement, run inside a generator process.

Every coroutine here runs in a worker process of `loadtests.bench.generator` (never in the process
that orchestrates), so floors and server are measured by the same client code in the same process
layout. Each returns plain, picklable data and the generator's own CPU over the measured phase
(`cpu`: process CPU seconds / wall seconds, 1.0 is one core busy), so a figure taken while the
load generator was saturated can be told apart from one that measures the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from spec import SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX

# The event loop of every process of the bench (Settings.event_loop): the servers', the bare stack's
# and the generator's, so the in-process framework floor runs on the loop the server runs on.
EVENT_LOOP = "auto"
EVENT_BYTES = 96  # about one text_delta of one token on the wire
CONNECT_CONCURRENCY = 50  # connections a generator process opens at once
SILENCE_LIMIT_S = 120.0  # longest wait for a `session`, or for one whole answer: a server that
# stops answering fails the bench with ServerSilent instead of hanging it


class ServerSilent(RuntimeError):
    """The server under measurement sent nothing it should have within SILENCE_LIMIT_S."""


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (not empty); `fraction` in [0, 1]."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


@dataclass
class Meter:
    """The generator process's CPU over a phase: `cpu()` is CPU seconds per wall second since start."""

    wall: float = field(default_factory=time.perf_counter)
    process: float = field(default_factory=time.process_time)

    def cpu(self) -> float:
        elapsed = time.perf_counter() - self.wall
        return (time.process_time() - self.process) / elapsed if elapsed > 0 else 0.0


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The client's garbage collector off for a measured phase (as `timeit` does), collected before
    and after: a collection over a generator process's thousand connections stalls its loop for
    100-230 ms (measured at 5,000 connections over 4 processes), which a pong timed through it
    would count as the server's latency."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()


async def wait_barrier(barrier: Any) -> None:
    """Wait at a multiprocessing barrier shared with the other generator processes (no-op: None)."""
    if barrier is not None:
        await asyncio.to_thread(barrier.wait)


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
                open_timeout=60,
            )
        except OSError:
            await asyncio.sleep(0.1 * (attempt + 1))
    raise RuntimeError(f"cannot connect to {url}")


async def _until_session(websocket: ClientConnection) -> dict[str, Any]:
    try:
        async with asyncio.timeout(SILENCE_LIMIT_S):
            while True:
                event: dict[str, Any] = orjson.loads(await websocket.recv())
                if event["type"] == "session":
                    return event
    except TimeoutError:
        raise ServerSilent(f"no `session` event within {SILENCE_LIMIT_S:g} s of connecting") from None


async def _open_many(
    url: str, tokens: list[str], expect_session: bool, query: str = ""
) -> tuple[list[ClientConnection], list[float]]:
    """Open one connection per token, CONNECT_CONCURRENCY at a time; (sockets, connect ms each).

    A connect time runs from the TCP connect to the 101 (bare stack) or to the `session` event."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    times: list[float] = []

    async def one(token: str) -> ClientConnection:
        async with gate:
            began = time.perf_counter()
            websocket = await open_ws(url, token or None, query)
            if expect_session:
                await _until_session(websocket)
            times.append((time.perf_counter() - began) * 1000)
            return websocket

    return list(await asyncio.gather(*[one(t) for t in tokens])), times


async def _close_all(sockets: list[ClientConnection]) -> None:
    await asyncio.gather(*[ws.close() for ws in sockets], return_exceptions=True)


# --- 1. the transport floor ----------------------------------------------------------------------


async def transport_floor(bare_url: str, events: int) -> dict[str, float]:
    """Events/s of one tight send loop of the bare stack, received by this client."""
    websocket = await open_ws(bare_url)
    try:
        await websocket.send(f"burst 1000 {EVENT_BYTES}")  # warm-up
        while orjson.loads(await websocket.recv()).get("type") != "done":
            pass
        meter = Meter()
        await websocket.send(f"burst {events} {EVENT_BYTES}")
        received = 0
        while orjson.loads(await websocket.recv()).get("type") != "done":
            received += 1
        return {"events_per_s": received / (time.perf_counter() - meter.wall), "cpu": meter.cpu()}
    finally:
        await websocket.close()


# --- 2. the framework in process ----------------------------------------------------------------------


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


_agents: dict[str, Any] = {}


async def _framework_run(agent: Any, prompt: str) -> tuple[float, int, float]:
    """(time to first text delta, deltas, total seconds) of one in-process run, driven as the
    server drives its runs (reference_server.runs: an event stream handler in the run's task)."""
    from loadtests.bench.bare_server import text_of

    began = time.perf_counter()
    first: float | None = None
    deltas = 0

    async def on_events(_: Any, events: AsyncIterator[Any]) -> None:
        nonlocal first, deltas
        async for event in events:
            if text_of(event):
                deltas += 1
                if first is None:
                    first = time.perf_counter() - began

    await agent.run(prompt, event_stream_handler=on_events)
    return first or 0.0, deltas, time.perf_counter() - began


async def framework_in_process(which: str, tokens: int, ttft_samples: int) -> dict[str, float]:
    """Deltas/s of one long instant stream and TTFT p50 of one-token answers, in process, no network
    (for reference: the served floor, `server_stream` on the bare stack, is what ratios are taken to).

    `which`: "server" (the reference server's agent) or "bare" (a FunctionModel, no tools)."""
    from loadtests.bench.bare_server import server_agent

    if which not in _agents:
        _agents[which] = server_agent() if which == "server" else bare_agent()
        await _framework_run(_agents[which], f"asp-fixture:text {min(tokens, 500)}")  # warm-up
    agent = _agents[which]
    meter = Meter()
    _, deltas, seconds = await _framework_run(agent, f"asp-fixture:text {tokens}")
    firsts = [(await _framework_run(agent, "asp-fixture:text 1"))[0] * 1000 for _ in range(ttft_samples)]
    return {"deltas_per_s": deltas / seconds, "ttft_p50_ms": statistics.median(firsts), "cpu": meter.cpu()}


# --- 3. a server: the reference server, or the framework served by the bare stack -------------------


async def _stream(websocket: ClientConnection, content: str) -> dict[str, Any]:
    """Send one message; time the first delta, every gap, and the end (`complete`).

    Raises ServerSilent when the answer is not complete within SILENCE_LIMIT_S (one deadline per
    answer, not per event: the receive loop is what the transport floor measures)."""
    began = time.perf_counter()
    await websocket.send(orjson.dumps({"type": "message", "content": content}).decode())
    first: float | None = None
    last: float | None = None
    gaps: list[float] = []
    events = tokens = 0
    try:
        async with asyncio.timeout(SILENCE_LIMIT_S):
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
    except TimeoutError:
        raise ServerSilent(f"no `complete` within {SILENCE_LIMIT_S:g} s of sending a message") from None


async def server_stream(
    url: str, tokens: list[str], stream_tokens: int, barrier: Any = None, expect_session: bool = True
) -> dict[str, float]:
    """One long instant stream (tokens/s, events/s, tokens) on `tokens[0]`'s connection, then the
    TTFT p50 of one-token answers, each on a fresh conversation of its own user (`tokens[1:]`).
    The same on the bare stack's framework floor with `expect_session` False (tokens "": none).

    `barrier` (shared with the orchestrator, which reads the server's CPU between the waits):
    waited just before and just after the long stream."""
    websocket = await open_ws(url, tokens[0] or None, "conversation_id=new")
    try:
        if expect_session:
            await _until_session(websocket)
        await _stream(websocket, f"asp-fixture:text {min(stream_tokens, 500)}")  # warm-up
        await wait_barrier(barrier)
        meter = Meter()
        run = await _stream(websocket, f"asp-fixture:text {stream_tokens}")
        await wait_barrier(barrier)
    finally:
        await websocket.close()
    # A fresh conversation per sample (no history, as in the framework floor); the connections are
    # opened first so that, like the floor's, the samples are taken back to back.
    sockets, _ = await _open_many(url, tokens[1:], expect_session, query="conversation_id=new")
    try:
        firsts = [(await _stream(ws, "asp-fixture:text 1"))["ttft_s"] * 1000 for ws in sockets]
    finally:
        await _close_all(sockets)
    return {
        "tokens_per_s": run["tokens"] / run["seconds"],
        "events_per_s": run["events"] / run["seconds"],
        "tokens": run["tokens"],
        "ttft_p50_ms": statistics.median(firsts),
        "cpu": meter.cpu(),
    }


async def paced_streams(
    url: str,
    tokens: list[str],
    first_index: int,
    total: int,
    pace_tokens: int,
    interval_ms: int,
    repeats: int,
    barrier: Any = None,
    expect_session: bool = True,
) -> list[dict[str, Any]]:
    """This process's share of a sweep level: len(tokens) connections, each streaming `pace_tokens`
    tokens one every interval_ms, `repeats` times; per repeat the ITL gaps (ms) of the complete
    runs, how many completed, and this process's CPU.

    The `total` streams of the level (over every process) start spread over one second, as users'
    messages arrive; `barrier` lines the processes up before each repeat. Not `expect_session`: the
    bare stack (`tokens` "": none, no `session` event)."""
    sockets, _ = await _open_many(url, tokens, expect_session, query="conversation_id=new")

    async def stream_after(index: int, websocket: ClientConnection) -> dict[str, Any]:
        await asyncio.sleep((first_index + index) / total)
        return await _stream(websocket, f"asp-fixture:slow {pace_tokens} {interval_ms}")

    outcomes = []
    try:
        for _ in range(repeats):
            await wait_barrier(barrier)
            meter = Meter()
            runs = await asyncio.gather(
                *[stream_after(i, ws) for i, ws in enumerate(sockets)], return_exceptions=True
            )
            cpu = meter.cpu()
            complete = [
                r
                for r in runs
                if isinstance(r, dict) and r["finish_reason"] == "stop" and r["tokens"] == pace_tokens
            ]
            gaps = [g * 1000 for r in complete for g in r["gaps"]]
            outcomes.append({"complete": len(complete), "gaps_ms": gaps, "cpu": cpu})
    finally:
        await _close_all(sockets)
    return outcomes


async def idle_connections(
    url: str, tokens: list[str], expect_session: bool, hold_s: float, ping_interval_s: float, barrier: Any
) -> dict[str, Any]:
    """This process's share of the connection-scale figure: open one connection per token (as
    fast as CONNECT_CONCURRENCY allows), then hold them all for `hold_s`, each sending an application
    ping every `ping_interval_s` and timing its pong.

    Barrier waits (shared with the orchestrator, which reads the server's memory between them):
    before opening, after opening, after the hold. Returns the open phase's wall-clock bounds,
    connect times, pong round trips (ms), pings with no pong within the interval, and CPU."""
    await wait_barrier(barrier)
    with collector_paused():
        opened_at = time.time()
        meter = Meter()
        sockets, connects = await _open_many(url, tokens, expect_session)
        finished_at, open_cpu = time.time(), meter.cpu()
    await wait_barrier(barrier)  # the orchestrator reads the server's RSS
    await wait_barrier(barrier)
    pongs: list[float] = []
    missed = 0
    end = time.perf_counter() + hold_s

    async def keep(websocket: ClientConnection, number: int) -> None:
        nonlocal missed
        await asyncio.sleep(random.uniform(0, ping_interval_s))
        sent = 0
        while time.perf_counter() < end:
            sent += 1
            began = time.perf_counter()
            ping_id = f"p{number}-{sent}"
            await websocket.send(orjson.dumps({"type": "ping", "id": ping_id}).decode())
            try:
                async with asyncio.timeout(ping_interval_s):
                    while orjson.loads(await websocket.recv()).get("id") != ping_id:
                        pass  # a late pong of an earlier ping
            except TimeoutError:
                missed += 1
                continue
            pongs.append((time.perf_counter() - began) * 1000)
            await asyncio.sleep(max(0.0, began + ping_interval_s - time.perf_counter()))

    meter = Meter()
    try:
        with collector_paused():
            await asyncio.gather(*[keep(ws, i) for i, ws in enumerate(sockets)])
        hold_cpu = meter.cpu()
        await wait_barrier(barrier)  # the orchestrator reads the server's RSS again
    finally:
        await _close_all(sockets)
    return {
        "opened_at": opened_at,
        "finished_at": finished_at,
        "connect_ms": connects,
        "pong_ms": pongs,
        "missed": missed,
        "open_cpu": open_cpu,
        "hold_cpu": hold_cpu,
    }
