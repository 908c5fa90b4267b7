"""Orchestrates `asp bench`: floors and server, each figure measured `repeats` times in the run.

Each server runs in its own process; every client runs in the generator's worker processes
(`loadtests.bench.generator`). A figure is reported as its median with min and max over the
repeats, beside the load generator's CPU (the busiest generator process, CPU seconds per wall
second) and the machine's 1-minute load average at each repeat. A figure whose generator process
sat above GENERATOR_BOUND of a core is marked `generator_bound`: it may measure the client, not
the server. Ratios are taken repeat by repeat (floor and server measured back to back), then
summarised, so a machine that slows down during the run moves both sides of each ratio.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from loadtests.bench import measure
from loadtests.bench.generator import Generator, split, wait
from loadtests.bench.processes import Served, start
from reference_server.auth import mint

GENERATOR_BOUND = 0.8  # of one core, in one generator process
PACE_MS = 20  # 50 tokens/s
ITL_P99_LIMIT_MS = 100.0
DEFINITIONS = {
    "figure": "each figure: median, min and max over the run's repeats; generator_cpu is the busiest "
    "load-generator process's CPU seconds per wall second at each repeat (1.0 = one core); load_avg the "
    "machine's 1-minute load average after each repeat; generator_bound when generator_cpu > 0.8",
    "transport_events_per_s": "events/s of bare uvicorn + FastAPI (same WebSocket settings) sending "
    f"{measure.EVENT_BYTES}-byte events in a tight loop to one client",
    "framework_*": "pydantic-ai in process running the server's own agent (offline model, tools, "
    "instructions) at instant pace: text deltas/s of one long run, TTFT p50 of one-token runs",
    "bare_framework_*": "the same with a bare instant FunctionModel agent (no tools), for reference",
    "server_tokens_per_s": "tokens/s of one instant-pace stream delivered over a real WebSocket",
    "server_events_per_s": "WebSocket events/s of that stream (coalescing may pack several tokens in one)",
    "server_ttft_ms": "p50 of message sent to first text_delta, each on a fresh conversation",
    "server_vs_framework": "server tokens/s / framework deltas/s, repeat by repeat",
    "ttft_ratio": "server TTFT p50 / framework TTFT p50, repeat by repeat",
    "sweep": "N concurrent streams of the offline model paced at 50 tokens/s, started over 1 s, on one "
    "server process; ITL = gaps between consecutive text_delta events of a run, pooled over the "
    "complete runs; N split over generator processes",
    "max_streams_at_50tps": "largest sweep level whose median ITL p99 < 100 ms with every stream "
    "complete in every repeat",
    "connection_scale": "N connections opened as fast as the generator can (50 at once per process; "
    "ASP: authenticated, until `session`), then held, each sending an application ping every "
    "ping_interval_s: connects/s = N / wall time to open all, pong round trips, server RSS growth "
    "per connection after opening; the same on the bare stack (its app answers pings) for the floor",
    "memory_ratio": "server KiB per idle authenticated connection / bare stack's, repeat by repeat",
}
TARGETS: dict[str, tuple[str, float]] = {
    "server_vs_framework": (">=", 0.9),
    "ttft_ratio": ("<=", 1.25),
    "memory_ratio": ("<=", 1.25),
    "max_streams_at_50tps": (">=", 200),
    "connects_per_s": (">=", 500),
    "pong_p99_ms": ("<", 50),
}


@dataclass
class BenchPlan:
    repeats: int = 3
    stream_tokens: int = 5000
    ttft_samples: int = 30
    transport_events: int = 50_000
    sweep: tuple[int, ...] = (10, 25, 50, 100, 150, 200, 300, 400)
    pace_tokens: int = 100
    connections: int = 1000
    hold_s: float = 10.0
    ping_interval_s: float = 2.0
    processes: int = 4
    streams_per_process: int = 100
    connections_per_process: int = 1250
    settle_s: float = 1.5  # before reading a server's memory

    @classmethod
    def quick(cls, connections: int | None = None) -> BenchPlan:
        """Seconds, for tests: the same measurements and process layout, smaller."""
        return cls(
            stream_tokens=300,
            ttft_samples=5,
            transport_events=2000,
            sweep=(2, 4),
            pace_tokens=10,
            connections=connections or 30,
            hold_s=1.0,
            ping_interval_s=0.5,
            processes=2,
            streams_per_process=2,
            connections_per_process=20,
            settle_s=0.3,
        )

    def applies(self, target: str) -> bool:
        """Whether this plan measures far enough for `target` to be judged."""
        if target == "max_streams_at_50tps":
            return max(self.sweep) > TARGETS[target][1]
        if target in ("connects_per_s", "pong_p99_ms"):
            return self.connections >= 1000
        return True


def _load() -> float:
    return os.getloadavg()[0]


def figure(
    samples: list[float], cpu: list[float] | None = None, load: list[float] | None = None
) -> dict[str, Any]:
    """One figure over its repeats: median [min, max], the samples, generator CPU and load average."""
    out: dict[str, Any] = {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": samples,
    }
    if cpu is not None:
        out["generator_cpu"] = cpu
        out["generator_bound"] = max(cpu) > GENERATOR_BOUND
    if load is not None:
        out["load_avg"] = load
    return out


def server_env(database: Path, secret: str, connections: int) -> dict[str, str]:
    """The settings of a server under the bench: SQLite at `database`, no pacing, fixtures on, room for
    `connections`, limits that never stop a measurement (rate, idle timeout, heartbeat)."""
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


class Bench:
    def __init__(self, plan: BenchPlan, generator: Generator, scratch: Path, progress: Callable[[str], None]):
        self.plan = plan
        self.generator = generator
        self.scratch = scratch
        self.progress = progress
        self.secret = secrets.token_urlsafe(32)
        self._servers = 0

    def tokens(self, prefix: str, count: int) -> list[str]:
        return [mint(f"{prefix}-{i}", self.secret) for i in range(count)]

    def start_server(self, connections: int) -> Served:
        self._servers += 1
        env = server_env(self.scratch / f"bench{self._servers}.db", self.secret, connections)
        return start("reference_server", env)

    async def transport(self) -> dict[str, Any]:
        bare = start("loadtests.bench.bare_server")
        rates, cpu, load = [], [], []
        try:
            for _ in range(self.plan.repeats):
                outcome = await self.generator.call(
                    "transport_floor", bare_url=bare.url, events=self.plan.transport_events
                )
                rates.append(outcome["events_per_s"])
                cpu.append(outcome["cpu"])
                load.append(_load())
        finally:
            bare.stop()
        return figure(rates, cpu, load)

    async def streams(self, served: Served) -> dict[str, Any]:
        """Framework floors and the server's stream and TTFT, interleaved repeat by repeat."""
        plan = self.plan
        columns: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        load: list[float] = []

        def note(name: str, value: float, generator_cpu: float | None = None) -> None:
            columns.setdefault(name, []).append(value)
            if generator_cpu is not None:
                cpu.setdefault(name, []).append(generator_cpu)

        for repeat in range(plan.repeats):
            framework = await self.generator.call(
                "framework_floor", which="server", tokens=plan.stream_tokens, ttft_samples=plan.ttft_samples
            )
            server = await self.generator.call(
                "server_stream",
                url=served.url,
                tokens=self.tokens(f"bench-stream-{repeat}", plan.ttft_samples + 1),
                stream_tokens=plan.stream_tokens,
            )
            lightest = await self.generator.call(
                "framework_floor", which="bare", tokens=plan.stream_tokens, ttft_samples=plan.ttft_samples
            )
            load.append(_load())
            for name, source in (("framework", framework), ("bare_framework", lightest)):
                # in process, no load generator: its CPU is the framework's own (about one core)
                note(f"{name}_deltas_per_s", source["deltas_per_s"])
                note(f"{name}_ttft_ms", source["ttft_p50_ms"])
                note(f"{name}_process_cpu", source["cpu"])
            note("server_tokens_per_s", server["tokens_per_s"], server["cpu"])
            note("server_events_per_s", server["events_per_s"], server["cpu"])
            note("server_ttft_ms", server["ttft_p50_ms"], server["cpu"])
            note("server_vs_framework", server["tokens_per_s"] / framework["deltas_per_s"], server["cpu"])
            note("ttft_ratio", server["ttft_p50_ms"] / framework["ttft_p50_ms"], server["cpu"])
        return {name: figure(values, cpu.get(name), load) for name, values in columns.items()}

    async def sweep_level(self, served: Served, level: int) -> dict[str, Any]:
        plan = self.plan
        shares = split(self.tokens(f"bench-sweep-{level}", level), plan.streams_per_process, plan.processes)
        barrier = self.generator.barrier(len(shares)) if len(shares) > 1 else None
        firsts = [sum(len(s) for s in shares[:i]) for i in range(len(shares))]
        outcomes = await asyncio.gather(
            *[
                self.generator.call(
                    "paced_streams",
                    url=served.url,
                    tokens=share,
                    first_index=first,
                    total=level,
                    pace_tokens=plan.pace_tokens,
                    interval_ms=PACE_MS,
                    repeats=plan.repeats,
                    barrier=barrier,
                )
                for share, first in zip(shares, firsts, strict=True)
            ]
        )
        p50, p99, complete, cpu = [], [], [], []
        for repeat in range(plan.repeats):
            gaps = [g for share in outcomes for g in share[repeat]["gaps_ms"]]
            complete.append(sum(share[repeat]["complete"] for share in outcomes))
            cpu.append(max(share[repeat]["cpu"] for share in outcomes))
            p50.append(measure.percentile(gaps, 0.5) if gaps else float("inf"))
            p99.append(measure.percentile(gaps, 0.99) if gaps else float("inf"))
        load = [_load()]
        return {
            "streams": level,
            "processes": len(shares),
            "complete_min": min(complete),
            "itl_p50_ms": figure(p50, cpu, load),
            "itl_p99_ms": figure(p99, cpu, load),
        }

    async def fresh_servers(self, count: int) -> list[tuple[bool, Served]]:
        """A bare and a reference server per repeat, started together (each is measured alone)."""
        kinds = [bare for _ in range(self.plan.repeats) for bare in (True, False)]
        return list(
            zip(
                kinds,
                await asyncio.gather(
                    *[
                        asyncio.to_thread(start, "loadtests.bench.bare_server")
                        if bare
                        else asyncio.to_thread(self.start_server, count)
                        for bare in kinds
                    ]
                ),
                strict=True,
            )
        )

    async def connection_scale(self, bare: bool, served: Served, count: int) -> dict[str, Any]:
        """One repeat on a fresh server process (its RSS is not lowered by memory others freed)."""
        plan = self.plan
        kind = "bare" if bare else "server"
        tag = secrets.token_hex(4)
        tokens = [""] * count if bare else self.tokens(f"bench-idle-{tag}", count)
        try:
            warm = tokens[:20] if bare else self.tokens(f"bench-warm-{tag}", 20)
            await self.generator.call(
                "idle_connections",
                url=served.url,
                tokens=warm,
                expect_session=not bare,
                hold_s=0.0,
                ping_interval_s=plan.ping_interval_s,
                barrier=None,
            )
            await asyncio.sleep(plan.settle_s)
            before = served.rss_kib()
            shares = split(tokens, plan.connections_per_process, plan.processes)
            barrier = self.generator.barrier(len(shares) + 1)
            calls = asyncio.ensure_future(
                asyncio.gather(
                    *[
                        self.generator.call(
                            "idle_connections",
                            url=served.url,
                            tokens=share,
                            expect_session=not bare,
                            hold_s=plan.hold_s,
                            ping_interval_s=plan.ping_interval_s,
                            barrier=barrier,
                        )
                        for share in shares
                    ]
                )
            )
            await _step(barrier, calls)  # opening
            await _step(barrier, calls)  # all open
            await asyncio.sleep(plan.settle_s)
            opened = served.rss_kib()
            await _step(barrier, calls)  # holding, pinging
            await _step(barrier, calls)  # held
            held = served.rss_kib()
            outcomes = await calls
        finally:
            served.stop()
        pongs = [p for o in outcomes for p in o["pong_ms"]]
        connects = [c for o in outcomes for c in o["connect_ms"]]
        wall = max(o["finished_at"] for o in outcomes) - min(o["opened_at"] for o in outcomes)
        self.progress(f"  {kind}: {count / wall:.0f} connects/s, {(opened - before) / count:.1f} KiB each")
        return {
            "connects_per_s": count / wall,
            "connect_p50_ms": measure.percentile(connects, 0.5),
            "connect_p99_ms": measure.percentile(connects, 0.99),
            "pong_p50_ms": measure.percentile(pongs, 0.5) if pongs else float("inf"),
            "pong_p99_ms": measure.percentile(pongs, 0.99) if pongs else float("inf"),
            "pongs_missed": sum(o["missed"] for o in outcomes),
            "kib_per_connection": (opened - before) / count,
            "kib_per_connection_held": (held - before) / count,
            "open_cpu": max(o["open_cpu"] for o in outcomes),
            "hold_cpu": max(o["hold_cpu"] for o in outcomes),
            "load_avg": _load(),
        }


async def _step(barrier: Any, calls: asyncio.Future[Any]) -> None:
    """The orchestrator's wait at the workers' barrier; a worker that failed aborts it and raises."""
    waiting = asyncio.ensure_future(wait(barrier))
    await asyncio.wait({waiting, calls}, return_when=asyncio.FIRST_COMPLETED)
    if not waiting.done():
        barrier.abort()
        calls.result()  # raises the worker's error
    await waiting


def _summarise_scale(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    load = [r["load_avg"] for r in repeats]
    for name in repeats[0]:
        if name in ("open_cpu", "hold_cpu", "load_avg"):
            continue
        cpu_name = "open_cpu" if name.startswith(("connect", "kib")) else "hold_cpu"
        out[name] = figure([r[name] for r in repeats], [r[cpu_name] for r in repeats], load)
    return out


async def run_bench(plan: BenchPlan, progress: Callable[[str], None] = print) -> dict[str, Any]:
    results: dict[str, Any] = {"plan": plan.__dict__ | {"sweep": list(plan.sweep)}, "load_avg_start": _load()}
    with TemporaryDirectory() as scratch:
        async with Generator(plan.processes) as generator:
            bench = Bench(plan, generator, Path(scratch), progress)
            progress(f"transport floor: bare uvicorn + FastAPI, tight send loop, {plan.repeats} repeats")
            results["transport_events_per_s"] = await bench.transport()

            served = bench.start_server(max(plan.sweep) + plan.ttft_samples + 10)
            try:
                progress("framework floor and server stream, interleaved repeat by repeat")
                results.update(await bench.streams(served))
                progress(f"server: concurrent streams at 50 tokens/s, {plan.repeats} repeats per level")
                results["sweep"] = []
                best = 0
                for level in plan.sweep:
                    outcome = await bench.sweep_level(served, level)
                    results["sweep"].append(outcome)
                    p99 = outcome["itl_p99_ms"]
                    progress(
                        f"  {level} streams over {outcome['processes']} processes: ITL p50 "
                        f"{outcome['itl_p50_ms']['median']:.1f} ms, p99 {p99['median']:.1f} "
                        f"[{p99['min']:.1f}-{p99['max']:.1f}] ms, "
                        f"generator CPU {max(p99['generator_cpu']):.2f}"
                        + (" GENERATOR-BOUND" if p99["generator_bound"] else "")
                    )
                    if outcome["complete_min"] != level or p99["median"] >= ITL_P99_LIMIT_MS:
                        break
                    best = level
                results["max_streams_at_50tps"] = best
            finally:
                served.stop()

            progress(
                f"connection scale: {plan.connections} connections, bare stack and server, fresh processes"
            )
            scale: dict[str, list[dict[str, Any]]] = {"bare": [], "server": []}
            fresh = await bench.fresh_servers(plan.connections)
            try:
                for bare, served in fresh:
                    outcome = await bench.connection_scale(bare, served, plan.connections)
                    scale["bare" if bare else "server"].append(outcome)
            finally:
                for _, served in fresh:
                    served.stop()
    results["connection_scale"] = {
        "connections": plan.connections,
        "ping_interval_s": plan.ping_interval_s,
        "hold_s": plan.hold_s,
        **{kind: _summarise_scale(repeats) for kind, repeats in scale.items()},
    }
    server_scale = results["connection_scale"]["server"]
    results["bare_kib_per_connection"] = results["connection_scale"]["bare"]["kib_per_connection"]
    results["server_kib_per_connection"] = server_scale["kib_per_connection"]
    results["connects_per_s"] = server_scale["connects_per_s"]
    results["pong_p99_ms"] = server_scale["pong_p99_ms"]
    results["memory_ratio"] = figure(
        [
            s["kib_per_connection"] / max(b["kib_per_connection"], 1e-9)
            for s, b in zip(scale["server"], scale["bare"], strict=True)
        ],
        load=[s["load_avg"] for s in scale["server"]],
    )
    results["load_avg_end"] = _load()
    results["targets"] = targets(results, plan)
    results["definitions"] = DEFINITIONS
    rounded: dict[str, Any] = _rounded(results)
    return rounded


def targets(results: dict[str, Any], plan: BenchPlan) -> dict[str, Any]:
    """Each target this plan can judge, on the figure's median."""
    judged = {}
    for name, (op, bound) in TARGETS.items():
        if not plan.applies(name):
            continue
        found = results[name]
        value = found["median"] if isinstance(found, dict) else found
        met = value >= bound if op == ">=" else value <= bound if op == "<=" else value < bound
        judged[name] = {"value": value, "target": f"{op} {bound}", "met": met}
    return judged


def _rounded(value: Any) -> Any:
    """Floats to 3 decimals; a figure with no samples (infinite) becomes null, as JSON has no inf."""
    if isinstance(value, float):
        return round(value, 3) if value != float("inf") else None
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def bench(plan: BenchPlan, progress: Callable[[str], None] = print) -> dict[str, Any]:
    return asyncio.run(run_bench(plan, progress))
