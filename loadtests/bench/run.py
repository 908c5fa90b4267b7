"""Orchestrates `asp bench`: floors first, then the server, each server in its own process."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from loadtests.bench import measure
from loadtests.bench.processes import start
from reference_server.auth import mint

DEFINITIONS = {
    "framework_*": "pydantic-ai in process running the server's own agent (offline model, tools, "
    "instructions)",
    "bare_framework_*": "pydantic-ai in process with a bare instant FunctionModel agent (no tools), "
    "for reference",
    "server_vs_framework": "server tokens/s delivered over a real WebSocket / framework text deltas/s "
    "in process",
    "server_events_per_s": "WebSocket events/s of that stream (coalescing may pack several tokens in one)",
    "ttft_ratio": "server TTFT p50 (message sent to first delta, fresh conversation) / framework TTFT p50",
    "memory_ratio": "server RSS growth per idle authenticated connection / bare stack's per connection",
    "max_streams_at_50tps": "largest sweep level whose pooled ITL p99 < 100 ms with every stream complete",
}
TARGETS = {"server_vs_framework": (">=", 0.8), "ttft_ratio": ("<=", 1.25), "memory_ratio": ("<=", 1.5)}


@dataclass
class BenchPlan:
    stream_tokens: int = 5000
    ttft_samples: int = 60
    transport_events: int = 50_000
    sweep: tuple[int, ...] = (10, 25, 50, 100, 150, 200, 300, 400)
    pace_tokens: int = 100
    memory_connections: int = 1000

    @classmethod
    def quick(cls) -> BenchPlan:
        """Seconds, for tests: the same measurements, smaller."""
        return cls(
            stream_tokens=300,
            ttft_samples=5,
            transport_events=2000,
            sweep=(2, 4),
            pace_tokens=10,
            memory_connections=50,
        )


def _server_env(database: Path, secret: str, connections: int) -> dict[str, str]:
    return {
        "ASP_JWT_SECRET": secret,
        "ASP_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "ASP_HOST": "127.0.0.1",
        "ASP_PORT": "0",
        "ASP_TOKEN_DELAY_MS": "0",
        "ASP_FIXTURES": "true",
        "ASP_ACCESS_LOG": "false",
        "ASP_MAX_CONNECTIONS": str(connections + 50),
        "ASP_RATE_LIMIT_MESSAGES": "1000000",
        "ASP_IDLE_TIMEOUT_MS": "600000",
        "ASP_HEARTBEAT_INTERVAL_MS": "60000",
    }


async def run_bench(plan: BenchPlan, progress: Any = print) -> dict[str, Any]:
    secret = secrets.token_urlsafe(32)
    results: dict[str, Any] = {}
    bare = start("loadtests.bench.bare_server")
    try:
        progress("transport floor: bare uvicorn + FastAPI, same WebSocket settings, tight send loop")
        results["transport_events_per_s"] = await measure.transport_events_per_s(
            bare.url, plan.transport_events
        )
        progress("memory floor: idle connections on the bare stack")
        results["bare_kib_per_connection"] = await measure.memory_per_connection(
            bare, bare.url, [""] * plan.memory_connections, expect_session=False
        )
    finally:
        bare.stop()
    progress("framework floor: pydantic-ai in process with the server's agent and instant model, no network")
    framework = await measure.framework_floor(measure.server_agent(), plan.stream_tokens, plan.ttft_samples)
    results["framework_deltas_per_s"] = framework["deltas_per_s"]
    results["framework_ttft_ms"] = framework["ttft_ms"]
    lightest = await measure.framework_floor(measure.bare_agent(), plan.stream_tokens, plan.ttft_samples)
    results["bare_framework_deltas_per_s"] = lightest["deltas_per_s"]
    results["bare_framework_ttft_ms"] = lightest["ttft_ms"]
    with TemporaryDirectory() as scratch:
        # Memory on a process of its own, fresh as the bare stack's: after streams, new connections
        # would reuse memory those freed (RSS would understate them), and the idle sessions left
        # behind would weigh on the latency figures.
        served = start(
            "reference_server", _server_env(Path(scratch) / "memory.db", secret, plan.memory_connections)
        )
        try:
            progress("reference server: idle authenticated connections")
            tokens = [mint(f"bench-idle-{i}", secret) for i in range(plan.memory_connections)]
            results["server_kib_per_connection"] = await measure.memory_per_connection(
                served, served.url, tokens, expect_session=True
            )
        finally:
            served.stop()
        served = start(
            "reference_server", _server_env(Path(scratch) / "bench.db", secret, plan.memory_connections)
        )
        try:
            progress("reference server: one stream from the instant model")
            stream = await measure.server_stream(
                served.url, lambda user: mint(user, secret), plan.stream_tokens, plan.ttft_samples
            )
            results.update(
                server_events_per_s=stream["events_per_s"],
                server_tokens_per_s=stream["tokens_per_s"],
                server_ttft_ms=stream["ttft_ms"],
            )
            progress("reference server: concurrent streams at 50 tokens/s")
            results["sweep"] = []
            best = 0
            for level in plan.sweep:
                tokens = [mint(f"bench-sweep-{level}-{i}", secret) for i in range(level)]
                outcome = await measure.streams_at_pace(served.url, tokens, plan.pace_tokens, 20)
                results["sweep"].append(outcome)
                progress(
                    f"  {level} streams: {outcome['complete']} complete, ITL p99 {outcome['itl_p99_ms']} ms"
                )
                if (
                    outcome["complete"] != level
                    or outcome["itl_p99_ms"] is None
                    or outcome["itl_p99_ms"] >= 100
                ):
                    break
                best = level
            results["max_streams_at_50tps"] = best
        finally:
            served.stop()
    results["server_vs_framework"] = results["server_tokens_per_s"] / results["framework_deltas_per_s"]
    results["ttft_ratio"] = results["server_ttft_ms"]["p50"] / results["framework_ttft_ms"]["p50"]
    results["memory_ratio"] = results["server_kib_per_connection"] / max(
        results["bare_kib_per_connection"], 1e-9
    )
    results["targets"] = {
        name: {
            "value": round(results[name], 3),
            "target": f"{op} {bound}",
            "met": results[name] >= bound if op == ">=" else results[name] <= bound,
        }
        for name, (op, bound) in TARGETS.items()
    }
    results["definitions"] = DEFINITIONS
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in results.items()}


def bench(plan: BenchPlan, progress: Any = print) -> dict[str, Any]:
    return asyncio.run(run_bench(plan, progress))
