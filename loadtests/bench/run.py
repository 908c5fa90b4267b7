"""Orchestrates `asp bench`: floors and server, each figure measured `repeats` times in the run.

Each server runs in its own process; every client runs in the generator's worker processes
(`loadtests.bench.generator`). A figure is reported as its median with min and max over the
repeats, beside the load generator's CPU (the busiest generator process, CPU seconds per wall
second) and the machine's 1-minute load average at each repeat. A figure whose generator process
sat above GENERATOR_BOUND of a core is marked `generator_bound`: it may measure the client, not
the server. Ratios are taken repeat by repeat (floor and server measured back to back), then
summarised, so a machine that slows down during the run moves both sides of each ratio.

With a Redis URL (`asp bench --redis-url URL [--database-url URL]`) the run has a scale-out section
too (issue 13), measured by the same code in the same run: the stream on a server keeping its state
in Redis (interleaved with the embedded server's and the framework's, repeat by repeat), its memory
per idle connection (a fresh process per repeat, beside the bare stack's), and the sweep on
`asp serve --workers 2` on Redis against the embedded server's sweep. Its shared state (a key prefix,
a fresh PostgreSQL database) is loadtests.bench.scale's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, Literal, TypedDict, TypeVar

from loadtests.bench import measure, scale
from loadtests.bench.generator import Generator, split, wait
from loadtests.bench.processes import DidNotStart, Served, machine_cpu_s, start
from loadtests.bench.scale import SharedState
from loadtests.bench.table import shown_figure
from reference_server.auth import mint
from reference_server.server import event_loop_name

T = TypeVar("T")
GENERATOR_BOUND = 0.8  # of one core, in one generator process
MACHINE_FULL = 0.9  # of the cores busy (machine_cpu / cores): a failing level then measured the machine
# A median repeat this far past a floor nothing can beat measured a disturbed floor (quiet runs give
# ttft_ratio 0.97-1.15; a run beside two busy loops gave [0.393, 0.328, 1.07], median 0.393, "met")
BEAT_TOLERANCE = 0.1
FLOOR_CPU = 0.9  # of a core: the in-process framework floor (CPU-bound, 1.0 alone) given less shared one
MEMORY_MIN_CONNECTIONS = 1000  # per-connection memory is judged from this many connections up: the
# server's first connections also grow it by fixed costs (allocator arenas, first-use imports and
# caches), about 600 KiB in a --quick run (30 connections: 26 KiB each against 6-7 KiB at 1,000-5,000);
# at 1,000 they weigh under 1 KiB, about a tenth of the figure, at 30 they are most of it
PACE_MS = 20  # 50 tokens/s
ITL_P99_LIMIT_MS = 100.0
# A level holds the pace when its median ITL p50 is within this of PACE_MS (issue 16's tolerance at 100
# streams): past the server's saturation its streams slow down together (ITL p50 36 ms at 300 streams,
# 52 ms at 400: 28 and 19 tokens/s) while ITL p99 stays under its limit, so p99 alone passed levels
# whose streams were not at 50 tokens/s
PACE_TOLERANCE_MS = 5.0
DEFINITIONS = {
    "figure": "each figure: median, min and max over the run's repeats; generator_cpu is the busiest "
    "load-generator process's CPU seconds per wall second at each repeat (1.0 = one core); load_avg the "
    "machine's 1-minute load average after each repeat; generator_bound when generator_cpu > 0.8",
    "transport_events_per_s": "events/s of bare uvicorn + FastAPI (same WebSocket settings) sending "
    f"{measure.EVENT_BYTES}-byte events in a tight loop to one client",
    "framework_*": "pydantic-ai in process running the server's own agent (offline model, tools, "
    "instructions) at instant pace, driven as the server drives it (agent.run with an event stream "
    "handler, in one task): text deltas/s of one long run, TTFT p50 of one-token runs; in each repeat "
    "measured just before and just after the servers' streams, the mean of the two "
    "(framework_process_cpu: the lower CPU share of the two)",
    "bare_framework_*": "the same with a bare instant FunctionModel agent (no tools), for reference",
    "served_framework_*": "the server's agent served by the bare stack (a FastAPI WebSocket endpoint sending "
    "each text delta at once, no token, session, history or replay), in its own process, timed by the "
    "server's client code: TTFT p50 of one-token runs (the TTFT floor), tokens/s of one long run",
    "server_tokens_per_s": "tokens/s of one instant-pace stream delivered over a real WebSocket",
    "server_events_per_s": "WebSocket events/s of that stream (coalescing may pack several tokens in one)",
    "server_ttft_ms": "p50 of message sent to first text_delta, each on a fresh conversation",
    "server_vs_framework": "server tokens/s / framework deltas/s (in process), repeat by repeat: a server "
    "may pack several tokens in one frame, so only the framework's own rate bounds it",
    "ttft_ratio": "server TTFT p50 / served framework TTFT p50, repeat by repeat: the first token crosses "
    "the transport alone, so its floor is the framework behind the bare stack",
    "ttft_ratio_in_process": "server TTFT p50 / framework TTFT p50 in process, for reference",
    "sweep": "N concurrent streams of the offline model paced at 50 tokens/s, started over 1 s, on one "
    "server process; ITL = gaps between consecutive text_delta events of a run, pooled over the "
    "complete runs; N split over generator processes",
    "max_streams_at_50tps": "largest sweep level that held the pace (median ITL p50 within "
    f"{PACE_TOLERANCE_MS:g} ms of {PACE_MS} ms, either side) with median ITL p99 < 100 ms and every stream "
    "complete in every repeat, below the first level that failed; a lower bound (see bounds) when no "
    "level failed (the sweep passed its top level, the plan's maximum: ceiling not reached) or the first "
    "that failed was generator-bound or had the machine full (machine_cpu >= 0.9 of cores)",
    "framework_sweep": "the same sweep, levels and judging on the bare stack serving the server's agent "
    "(served_framework: each text delta sent at once, no token, session, history or replay), in its own "
    "process: framework_max_streams_at_50tps is the framework's own ceiling on this machine",
    "max_streams_vs_framework": "max_streams_at_50tps / framework_max_streams_at_50tps, both in this run: "
    "what the server keeps of the framework's capacity for paced streams (with a bound when either "
    "ceiling is one, as workers_vs_embedded)",
    "connection_scale": "N connections opened as fast as the generator can (50 at once per process; "
    "ASP: authenticated, until `session`), then held, each sending an application ping every "
    "ping_interval_s: connects/s = N / wall time to open all, pong round trips, server RSS growth "
    "per connection after opening; the same on the bare stack (its app answers pings) for the floor",
    "memory_ratio": "server KiB per idle authenticated connection / bare stack's, repeat by repeat",
    "server_cpu_ms_per_1000_tokens": "server process CPU (user + system, /proc) over the long stream of "
    "server_tokens_per_s, per 1,000 tokens delivered",
    "sweep server_cpu": "CPU of the server's processes over a whole sweep level (connections opened, every "
    "repeat), per wall second: 1.0 is one core; server_busiest_cpu is its busiest process's; "
    "generator_cpu_total the generator processes' together, per repeat; redis_cpu the Redis server's "
    "(INFO cpu: other users of that Redis count too); machine_cpu every process's on this machine "
    "(/proc/stat), of `cores`: near `cores`, the machine, not the server, was full",
    "sweep levels": "each sweep (the embedded server's and the workers') climbs the same levels, past "
    "the target, until one fails; the last level is the maximum, a sweep that passes it reports a bound",
    "refined levels": "after the first failing level, `refine` levels halfway between the last passed and "
    "the first failed, so max_streams_at_50tps is not only a level of the list",
    "scale_out": "with --redis-url: the same measurements with the server's state in Redis (connection "
    "limit, sessions and replay buffers as Redis Streams, rate limit) and its history in a fresh PostgreSQL "
    "database (--database-url) or a SQLite file; every server of the run under its own key prefix",
    "redis_server_vs_framework": "Redis server tokens/s / framework deltas/s in process, repeat by repeat; "
    "redis_ttft_ratio its TTFT p50 / the served framework's",
    "cpu_per_1000_tokens_ratio": "Redis server CPU per 1,000 tokens / the embedded server's, repeat by "
    "repeat",
    "redis_memory_ratio": "Redis server KiB per idle authenticated connection / the bare stack's, repeat by "
    "repeat, each on a fresh process",
    "workers_vs_embedded": "max_streams_at_50tps of `asp serve --workers 2` on Redis / the embedded "
    "server's (the sweep above), both in this run; the workers' sweep runs over the same generator "
    "processes. With the embedded figure a lower bound, the ratio is an upper bound; with the workers' a "
    "lower bound (the machine full at their failing level: the ratio measures this machine), a lower "
    "bound; with both, not determined. machine_full_at: the workers' levels with the machine full",
    "bounds": "the judged figures this run can only bound, by name: bound lower (the true value is at "
    "least the one measured), upper (at most) or none (neither), and why; every other figure is as "
    "measured. A sweep's ceiling (above); a generator-bound figure: a busy client reads fewer tokens/s and "
    "connects/s than the server gives (lower) and adds to each pong (upper), TTFT ratios cross it on both "
    "sides (none); a pong p99 with pings left without a pong (lower: they are the slowest); a ratio over "
    "the framework in process when that floor got under 0.9 of a core in a repeat (none: the busy "
    "machine slowed the floor and the server beside it, each by an amount not measured)",
    "nothing measured": "a ratio of two growths (memory_ratio, redis_memory_ratio: RSS growth per "
    "connection; cpu_per_1000_tokens_ratio: CPU over a stream) with a part that grew nothing or shrank in "
    "a repeat is not determined (bound none): there was nothing to divide, whatever the quotient",
    "beats its floor": "a ratio to a floor nothing can beat (ttft_ratio: below 1) beyond it by more "
    "than its repeats' spread (its best repeat, moved by max - min, still beyond 1), or whose median "
    f"repeat is beyond it by more than {BEAT_TOLERANCE:.0%} (the median itself measured a disturbed floor), "
    "is not determined (bound none): the floor was disturbed (starved or slowed), not beaten",
    "too few connections": f"memory_ratio and redis_memory_ratio with fewer than {MEMORY_MIN_CONNECTIONS:,} "
    "connections are not determined (bound none): the growth of the first connections is mostly fixed "
    "costs (allocator arenas, first-use imports and caches), not a per-connection figure",
    "no embedded level passed": "workers_vs_embedded when the embedded sweep passed no level is not "
    "determined (null): there is no embedded figure to divide by",
    "targets": "each target the plan judges: verdict met, missed, or not determined (a bound on the "
    "wrong side of the target proves neither); met is true only for met, and any other verdict exits 3",
}
Bound = Literal["exact", "lower", "upper", "none"]  # the true value is =, >=, <= the one measured, or neither
FLIPPED: dict[Bound, Bound] = {"exact": "exact", "lower": "upper", "upper": "lower", "none": "none"}


class Evidence(TypedDict):
    """What a run shows of one figure: its `bound`, and `why` when it is not "exact"."""

    bound: Bound
    why: str


BUSY_CLIENT: dict[str, Bound] = {  # what a generator-bound figure of each target still shows
    "server_vs_framework": "lower",  # a busy client reads fewer tokens/s than the server sends
    "redis_server_vs_framework": "lower",
    "connects_per_s": "lower",
    "pong_p99_ms": "upper",  # a busy client adds to each round trip
    "ttft_ratio": "none",  # both TTFTs cross the same client
    "cpu_per_1000_tokens_ratio": "none",
}
TARGETS: dict[str, tuple[str, float]] = {
    "server_vs_framework": (">=", 0.9),
    "ttft_ratio": ("<=", 1.25),
    "memory_ratio": ("<=", 1.25),
    "max_streams_at_50tps": (">=", 200),
    "connects_per_s": (">=", 500),
    "pong_p99_ms": ("<", 50),
    "redis_server_vs_framework": (">=", 0.8),
    "cpu_per_1000_tokens_ratio": ("<=", 1.3),
    "redis_memory_ratio": ("<=", 1.5),
    "workers_vs_embedded": (">=", 1.5),
}
GROWTHS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {  # ratios of two growths: their parts
    "memory_ratio": (
        ("server_kib_per_connection", "the server's"),
        ("bare_kib_per_connection", "the bare stack's"),
    ),
    "redis_memory_ratio": (
        ("redis_kib_per_connection", "the Redis server's"),
        ("bare_kib_per_connection", "the bare stack's"),
    ),
    "cpu_per_1000_tokens_ratio": (
        ("redis_server_cpu_ms_per_1000_tokens", "the Redis server's"),
        ("server_cpu_ms_per_1000_tokens", "the embedded server's"),
    ),
}
SCALE_OUT = (
    "redis_server_vs_framework",
    "cpu_per_1000_tokens_ratio",
    "redis_memory_ratio",
    "workers_vs_embedded",
)


@dataclass
class BenchPlan:
    repeats: int = 3
    stream_tokens: int = 20_000  # long enough that a run's fixed costs (first token, storing it) and
    # /proc's 10 ms CPU ticks weigh under 1% of the stream figures
    ttft_samples: int = 30
    transport_events: int = 50_000
    # the levels both sweeps (embedded, --workers) climb to the first that fails; the last is the maximum,
    # above 1.5 x what an embedded server reaches on a fast 2-core machine (400-500 streams)
    sweep: tuple[int, ...] = (10, 25, 50, 100, 150, 200, 300, 400, 500, 600, 800, 1000, 1200, 1600)
    pace_tokens: int = 100
    connections: int = 1000
    hold_s: float = 10.0
    ping_interval_s: float = 2.0
    processes: int = 4
    streams_per_process: int = 100
    connections_per_process: int = 1250
    settle_s: float = 1.5  # before reading a server's memory
    refine: int = 2  # sweep levels bisecting between the last passed and the first failed
    workers: int = 2  # scale-out: `asp serve --workers N` on Redis

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
            hold_s=2.0,  # two pings per connection, each with a second for its pong: a suite running
            ping_interval_s=1.0,  # beside it on two cores may stall a server half a second
            processes=2,
            streams_per_process=2,
            connections_per_process=20,
            settle_s=0.3,
            refine=0,
        )

    def applies(self, target: str) -> bool:
        """Whether this plan measures far enough for `target` to be judged (a sweep that does not
        reach a ceiling is judged on its bound, see `ceiling` and `judge`)."""
        if target in ("max_streams_at_50tps", "workers_vs_embedded"):
            return max(self.sweep) > TARGETS["max_streams_at_50tps"][1]
        if target in ("connects_per_s", "pong_p99_ms"):
            return self.connections >= 1000
        return True


def _processes(count: int) -> str:
    return f"{count} process" + ("" if count == 1 else "es")


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
        "ASP_EVENT_LOOP": measure.EVENT_LOOP,  # the generator's and the bare stack's too
    }


class Bench:
    """One run's servers and measurements, all through `generator`. `shared` (the scale-out section's
    Redis prefix and database) is None when the run has no --redis-url."""

    def __init__(
        self,
        plan: BenchPlan,
        generator: Generator,
        scratch: Path,
        progress: Callable[[str], None],
        shared: SharedState | None = None,
    ):
        self.plan = plan
        self.generator = generator
        self.scratch = scratch
        self.progress = progress
        self.shared = shared
        self.secret = secrets.token_urlsafe(32)
        self._servers = 0

    def tokens(self, prefix: str, count: int) -> list[str]:
        return [mint(f"{prefix}-{i}", self.secret) for i in range(count)]

    def server_env(self, connections: int, redis: bool = False) -> dict[str, str]:
        """A new server's settings: its own SQLite file; with `redis`, the run's shared state over it."""
        self._servers += 1
        env = server_env(self.scratch / f"bench{self._servers}.db", self.secret, connections)
        if redis:
            assert self.shared is not None
            env |= self.shared.env()
        return env

    def start_server(self, connections: int, redis: bool = False) -> Served:
        """A reference server process, embedded, or keeping its state in Redis (`redis`).

        Raises DidNotStart, naming the user's settings it had (`users_settings`) with `redis`."""
        with self._users_settings(redis):
            return start("reference_server", self.server_env(connections, redis))

    def start_workers(self, connections: int) -> Served:
        """`asp serve --workers N` (N = plan.workers) on the run's Redis, once its workers run."""
        env = self.server_env(connections, redis=True)
        args = ["serve", "--workers", str(self.plan.workers)]
        with self._users_settings(True):
            return start("asp_cli.main", env, args=args, workers=self.plan.workers)

    @contextlib.contextmanager
    def _users_settings(self, redis: bool) -> Iterator[None]:
        """A DidNotStart raised inside names the user's settings the server had: with `redis`, the
        run's --redis-url (and --database-url); an embedded server has the bench's alone."""
        try:
            yield
        except DidNotStart as failed:
            if redis and self.shared is not None:
                failed.users_settings = "--redis-url" + (
                    " or --database-url" if self.shared.database_url else ""
                )
            raise

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

    async def server_stream(self, served: Served, tag: str, framework: bool = False) -> dict[str, Any]:
        """`measure.server_stream` on `served` (`framework`: the bare stack's framework floor, no
        token or session), with the server's CPU per 1,000 tokens of its long stream (read between
        the generator's barrier waits around that stream)."""
        barrier = self.generator.barrier(2)
        count = self.plan.ttft_samples + 1
        call = _background(
            self.generator.call(
                "server_stream",
                url=served.url,
                tokens=[""] * count if framework else self.tokens(tag, count),
                stream_tokens=self.plan.stream_tokens,
                barrier=barrier,
                expect_session=not framework,
            )
        )
        await _step(barrier, call)
        began = served.cpu_s()
        await _step(barrier, call)
        used = served.cpu_s() - began
        outcome: dict[str, Any] = await call
        outcome["cpu_ms_per_1000_tokens"] = used * 1e6 / max(1, outcome["tokens"])
        return outcome

    async def streams(self, servers: dict[str, Served]) -> dict[str, Any]:
        """The framework floor and each server's stream and TTFT, interleaved repeat by repeat.

        `servers`: "served_framework" (the bare stack serving the server's agent), "server"
        (embedded) and, in a scale-out run, "redis_server"; each one's figures are named after it,
        its ratios taken against the floors of the same repeat: tokens/s against the framework in
        process (a server may pack several tokens in one frame, so the framework's own rate is the
        ceiling), TTFT against the served framework (the first token crosses the transport alone,
        so its floor is the framework behind the bare stack, timed by the same client)."""
        plan = self.plan
        columns: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        load: list[float] = []

        def note(name: str, value: float, generator_cpu: float | None = None) -> None:
            columns.setdefault(name, []).append(value)
            if generator_cpu is not None:
                cpu.setdefault(name, []).append(generator_cpu)

        async def floors() -> dict[str, dict[str, float]]:
            return {
                name: await self.generator.call(
                    "framework_in_process",
                    which=which,
                    tokens=plan.stream_tokens,
                    ttft_samples=plan.ttft_samples,
                )
                for name, which in (("framework", "server"), ("bare_framework", "bare"))
            }

        for repeat in range(plan.repeats):
            # the floors just before and just after the servers' streams, their mean the repeat's
            # floor: a machine whose speed drifts (a neighbour, a busy host) moves both sides
            before = await floors()
            measured = {
                name: await self.server_stream(
                    served, f"bench-{name}-{repeat}", framework=name == "served_framework"
                )
                for name, served in servers.items()
            }
            in_process = bracketed(before, await floors())
            load.append(_load())
            for name, source in in_process.items():
                # no load generator: its CPU is the framework's own (about one core)
                note(f"{name}_deltas_per_s", source["deltas_per_s"])
                note(f"{name}_ttft_ms", source["ttft_p50_ms"])
                note(f"{name}_process_cpu", source["cpu"])
            framework, served_framework = in_process["framework"], measured["served_framework"]
            for name, server in measured.items():
                note(f"{name}_tokens_per_s", server["tokens_per_s"], server["cpu"])
                note(f"{name}_events_per_s", server["events_per_s"], server["cpu"])
                note(f"{name}_ttft_ms", server["ttft_p50_ms"], server["cpu"])
                note(f"{name}_cpu_ms_per_1000_tokens", server["cpu_ms_per_1000_tokens"], server["cpu"])
                if name == "served_framework":
                    continue
                kind = name.removesuffix("server")  # "" or "redis_"
                note(
                    f"{name}_vs_framework", server["tokens_per_s"] / framework["deltas_per_s"], server["cpu"]
                )
                ttft = server["ttft_p50_ms"]
                both = max(server["cpu"], served_framework["cpu"])  # each TTFT crossed the client
                note(f"{kind}ttft_ratio", ttft / served_framework["ttft_p50_ms"], both)
                note(f"{kind}ttft_ratio_in_process", ttft / framework["ttft_p50_ms"], server["cpu"])
            if "redis_server" in measured:
                note(  # a part measured at 0 (/proc's 10 ms ticks) is not determined: `bounds`
                    "cpu_per_1000_tokens_ratio",
                    measured["redis_server"]["cpu_ms_per_1000_tokens"]
                    / max(measured["server"]["cpu_ms_per_1000_tokens"], 1e-9),
                    measured["redis_server"]["cpu"],
                )
        return {name: figure(values, cpu.get(name), load) for name, values in columns.items()}

    async def sweep(
        self, served: Served, label: str = "", redis: bool = False, session: bool = True
    ) -> list[dict[str, Any]]:
        """The sweep of `plan.sweep` on `served` (`redis`: a server on the run's Redis; not `session`:
        the bare stack, no token or session), up to the first level that fails (`level_passed`), then
        `plan.refine` levels bisecting between the last passed and the first failed. Returns every
        level's figures, `passed` among them, by number of streams (what they show: `ceiling`)."""
        best, failed, outcomes = 0, 0, []

        async def passes(level: int) -> bool:
            outcome = await self.sweep_level(served, level, redis, session)
            outcomes.append(outcome)
            p99 = outcome["itl_p99_ms"]
            self.progress(
                f"  {label}{level} streams over {_processes(outcome['processes'])}: ITL p50 "
                f"{outcome['itl_p50_ms']['median']:.1f} ms, p99 {p99['median']:.1f} "
                f"[{p99['min']:.1f}-{p99['max']:.1f}] ms, generator CPU {max(p99['generator_cpu']):.2f} "
                f"(all {max(outcome['generator_cpu_total']):.2f}), server CPU {outcome['server_cpu']:.2f}"
                + (f", Redis CPU {outcome['redis_cpu']:.2f}" if "redis_cpu" in outcome else "")
                + f", machine CPU {outcome['machine_cpu']:.2f} of {outcome['cores']}"
                + f", load {p99['load_avg'][0]:.1f}"
                + (" GENERATOR-BOUND" if p99["generator_bound"] else "")
            )
            outcome["passed"] = level_passed(outcome)
            return bool(outcome["passed"])

        for level in self.plan.sweep:
            if not await passes(level):
                failed = level
                break
            best = level
        for _ in range(self.plan.refine if failed else 0):
            level = (best + failed) // 2
            if level <= best or level - best < max(1, best // 20):  # within 5%: close enough
                break
            if await passes(level):
                best = level
            else:
                failed = level
        levels = sorted(outcomes, key=lambda outcome: int(outcome["streams"]))
        found = ceiling(levels)
        if found["bound"] != "exact":
            self.progress(f"  {label}max_streams_at_50tps >= {found['streams']}: {found['why']}")
        return levels

    async def sweep_level(
        self, served: Served, level: int, redis: bool = False, session: bool = True
    ) -> dict[str, Any]:
        """One sweep level: `level` paced streams over the generator processes, `plan.repeats` times;
        the ITL figures, the generator's CPU, and the server's (and with `redis`, Redis's) CPU. Not
        `session`: the bare stack (no token, no session to wait for)."""
        plan = self.plan
        tokens = self.tokens(f"bench-sweep-{level}", level) if session else [""] * level
        shares = split(tokens, plan.streams_per_process, plan.processes)
        barrier = self.generator.barrier(len(shares)) if len(shares) > 1 else None
        firsts = [sum(len(s) for s in shares[:i]) for i in range(len(shares))]
        redis_url = self.shared.redis_url if redis and self.shared else ""
        server_before, machine_before = served.cpu_by_process(), machine_cpu_s()
        redis_before = await scale.redis_cpu_s(redis_url) if redis_url else 0.0
        began = time.perf_counter()
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
                    expect_session=session,
                )
                for share, first in zip(shares, firsts, strict=True)
            ]
        )
        wall = time.perf_counter() - began
        server_after, machine = served.cpu_by_process(), machine_cpu_s() - machine_before
        used = {pid: cpu - server_before.get(pid, 0.0) for pid, cpu in server_after.items()}
        p50, p99, complete, cpu, total = [], [], [], [], []
        for repeat in range(plan.repeats):
            gaps = [g for share in outcomes for g in share[repeat]["gaps_ms"]]
            complete.append(sum(share[repeat]["complete"] for share in outcomes))
            cpu.append(max(share[repeat]["cpu"] for share in outcomes))
            total.append(sum(share[repeat]["cpu"] for share in outcomes))
            p50.append(measure.percentile(gaps, 0.5) if gaps else float("inf"))
            p99.append(measure.percentile(gaps, 0.99) if gaps else float("inf"))
        load = [_load()]
        out = {
            "streams": level,
            "processes": len(shares),
            "complete_min": min(complete),
            "itl_p50_ms": figure(p50, cpu, load),
            "itl_p99_ms": figure(p99, cpu, load),
            "generator_cpu_total": total,
            "server_cpu": sum(used.values()) / wall,
            "server_busiest_cpu": max(used.values()) / wall,
            "machine_cpu": machine / wall,
            "cores": os.cpu_count() or 1,
        }
        if redis_url:
            out["redis_cpu"] = (await scale.redis_cpu_s(redis_url) - redis_before) / wall
        return out

    async def fresh_servers(self, count: int, kinds: tuple[str, ...]) -> list[tuple[str, Served]]:
        """One server of each kind ("bare", "server", "redis_server") per repeat, started together
        (each is measured alone). When one does not start (DidNotStart) or the wait is cancelled,
        every start is waited for and the servers that did start are stopped: none left running."""
        order = [kind for _ in range(self.plan.repeats) for kind in kinds]

        def launch(kind: str) -> Callable[[], Served]:
            if kind == "bare":
                return lambda: start("loadtests.bench.bare_server")
            # its settings (its own file and key prefix) made here, in order; the process in a thread
            env = self.server_env(count, redis=kind == "redis_server")

            def reference() -> Served:
                with self._users_settings(kind == "redis_server"):
                    return start("reference_server", env)

            return reference

        starts = [asyncio.ensure_future(asyncio.to_thread(launch(kind))) for kind in order]
        try:
            await asyncio.wait(starts)
        except BaseException:  # cancelled (Ctrl-C): the threads run on; wait for them, stop their servers
            await asyncio.wait(starts)
            _stop_started(starts)
            raise
        for task in starts:
            failure = task.exception()
            if failure is not None:
                _stop_started(starts)
                raise failure
        return [(kind, task.result()) for kind, task in zip(order, starts, strict=True)]

    async def connection_scale(self, kind: str, served: Served, count: int) -> dict[str, Any]:
        """One repeat on a fresh server process (its RSS is not lowered by memory others freed)."""
        plan = self.plan
        bare = kind == "bare"
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
            calls = _background(
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


def bracketed(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """One repeat's in-process floors from their measurements before and after the servers': the
    mean of each rate and TTFT, and the lower CPU share (a floor that got less than a core in
    either was slowed, FLOOR_CPU)."""
    return {
        name: {
            key: min(value, after[name][key]) if key == "cpu" else (value + after[name][key]) / 2
            for key, value in figures.items()
        }
        for name, figures in before.items()
    }


def level_passed(outcome: dict[str, Any]) -> bool:
    """Whether a sweep level (`sweep_level`'s figures) held 50 tokens/s: every stream complete in
    every repeat, median ITL p50 within PACE_TOLERANCE_MS of the pace on either side (under it: late
    streams catching up in bursts) and median ITL p99 under ITL_P99_LIMIT_MS."""
    return bool(
        outcome["complete_min"] == outcome["streams"]
        and abs(outcome["itl_p50_ms"]["median"] - PACE_MS) <= PACE_TOLERANCE_MS
        and outcome["itl_p99_ms"]["median"] < ITL_P99_LIMIT_MS
    )


def _stop_started(starts: Sequence[asyncio.Future[Served]]) -> None:
    """Stop the server of each of `starts` (all done) that started."""
    for task in starts:
        if not task.cancelled() and task.exception() is None:
            task.result().stop()


def _background(awaitable: Awaitable[T]) -> asyncio.Future[T]:
    """`awaitable` running while the orchestrator does other work between its waits. Its failure
    still raises where it is awaited; left behind by a cancelled run (Ctrl-C, SIGTERM), it fails
    when the generator stops, and that is not news: asyncio would print it as a traceback ("exception
    was never retrieved") after the bench's one line."""
    future = asyncio.ensure_future(awaitable)
    future.add_done_callback(_retrieved)
    return future


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def _step(barrier: Any, calls: asyncio.Future[Any]) -> None:
    """The orchestrator's wait at the workers' barrier; a worker that failed aborts it and raises."""
    waiting = _background(wait(barrier))
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


def _memory_ratio(scale: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, Any]:
    """`kind`'s KiB per idle connection / the bare stack's, repeat by repeat (a growth of zero or
    less on either side: not determined, `bounds`)."""
    return figure(
        [
            s["kib_per_connection"] / max(b["kib_per_connection"], 1e-9)
            for s, b in zip(scale[kind], scale["bare"], strict=True)
        ],
        load=[s["load_avg"] for s in scale[kind]],
    )


async def run_bench(
    plan: BenchPlan, progress: Callable[[str], None] = print, redis_url: str = "", database_url: str = ""
) -> dict[str, Any]:
    """The figures of one run (see DEFINITIONS), with the targets this plan judges.

    With `redis_url`, the scale-out section too, its servers on a fresh key prefix of that Redis
    and, with `database_url` (PostgreSQL), a fresh database beside it (loadtests.bench.scale)."""
    results: dict[str, Any] = {
        "plan": plan.__dict__ | {"sweep": list(plan.sweep)},
        "event_loop": event_loop_name(measure.EVENT_LOOP),
        "load_avg_start": _load(),
    }
    async with contextlib.AsyncExitStack() as stack:
        shared = (
            await stack.enter_async_context(scale.provisioned(redis_url, database_url)) if redis_url else None
        )
        scratch = Path(stack.enter_context(TemporaryDirectory()))
        generator = await stack.enter_async_context(Generator(plan.processes))
        bench = Bench(plan, generator, scratch, progress, shared)
        progress(f"transport floor: bare uvicorn + FastAPI, tight send loop, {plan.repeats} repeats")
        results["transport_events_per_s"] = await bench.transport()

        room = max(plan.sweep) + plan.ttft_samples + 10
        servers: dict[str, Served] = {}
        try:  # each started inside: a start that fails leaves none of the others running
            servers["served_framework"] = start("loadtests.bench.bare_server")
            servers["server"] = bench.start_server(room)
            if shared:
                servers["redis_server"] = bench.start_server(plan.ttft_samples + 10, redis=True)
            progress(
                "framework floor and server stream"
                + (", embedded and on Redis," if shared else "")
                + " interleaved repeat by repeat"
            )
            results.update(await bench.streams(servers))
            progress(f"server: concurrent streams at 50 tokens/s, {plan.repeats} repeats per level")
            results["sweep"] = await bench.sweep(servers["server"])
            results["max_streams_at_50tps"] = ceiling(results["sweep"])["streams"]
            progress("framework floor: the same sweep on the bare stack serving the server's agent")
            framework = servers["served_framework"]  # in `servers` until stopped: `finally` stops it
            results["framework_sweep"] = await bench.sweep(framework, "framework: ", session=False)
            servers.pop("served_framework").stop()
            floor = ceiling(results["framework_sweep"])["streams"]
            results["framework_max_streams_at_50tps"] = floor
            results["max_streams_vs_framework"] = results["max_streams_at_50tps"] / floor if floor else None
        finally:
            for served in servers.values():
                served.stop()

        kinds = ("bare", "server", "redis_server") if shared else ("bare", "server")
        progress(f"connection scale: {plan.connections} connections, {', '.join(kinds)}, fresh processes")
        scale_runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
        fresh = await bench.fresh_servers(plan.connections, kinds)
        try:
            for kind, served in fresh:
                scale_runs[kind].append(await bench.connection_scale(kind, served, plan.connections))
        finally:
            for _, served in fresh:
                served.stop()

        if shared:
            progress(
                f"scale-out: asp serve --workers {plan.workers} on Redis, concurrent streams at 50 tokens/s"
            )
            workers = bench.start_workers(max(plan.sweep) + 10)
            try:
                levels = await bench.sweep(workers, f"--workers {plan.workers}: ", redis=True)
            finally:
                workers.stop()
            results["scale_out"] = _scale_out(results, shared, plan, levels)
    results["connection_scale"] = {
        "connections": plan.connections,
        "ping_interval_s": plan.ping_interval_s,
        "hold_s": plan.hold_s,
        **{kind: _summarise_scale(repeats) for kind, repeats in scale_runs.items()},
    }
    server_scale = results["connection_scale"]["server"]
    results["bare_kib_per_connection"] = results["connection_scale"]["bare"]["kib_per_connection"]
    results["server_kib_per_connection"] = server_scale["kib_per_connection"]
    results["connects_per_s"] = server_scale["connects_per_s"]
    results["pong_p99_ms"] = server_scale["pong_p99_ms"]
    results["memory_ratio"] = _memory_ratio(scale_runs, "server")
    if "scale_out" in results:
        results["scale_out"]["redis_kib_per_connection"] = results["connection_scale"]["redis_server"][
            "kib_per_connection"
        ]
        results["scale_out"]["redis_memory_ratio"] = _memory_ratio(scale_runs, "redis_server")
    results["load_avg_end"] = _load()
    results["bounds"] = bounds(results)
    results["targets"] = targets(results, plan)
    results["definitions"] = DEFINITIONS
    rounded: dict[str, Any] = _rounded(results)
    return rounded


def _scale_out(
    results: dict[str, Any], shared: SharedState, plan: BenchPlan, levels: list[dict[str, Any]]
) -> dict[str, Any]:
    """The scale-out section: its figures moved out of the stream figures, and the workers' sweep."""
    from reference_server.stores import shown_url

    section: dict[str, Any] = {
        "redis": shown_url(shared.redis_url),
        "prefix": shared.prefix,
        "database": shared.database or "a SQLite file per server",
        "workers": plan.workers,
    }
    for name in [n for n in results if n.startswith("redis_") or n == "cpu_per_1000_tokens_ratio"]:
        section[name] = results.pop(name)
    best = ceiling(levels)["streams"]
    section["embedded_max_streams_at_50tps"] = results["max_streams_at_50tps"]
    section["workers_max_streams_at_50tps"] = best
    embedded = results["max_streams_at_50tps"]
    section["workers_vs_embedded"] = best / embedded if embedded else None  # none passed: `bounds`
    section["machine_full_at"] = machine_full_at(levels)
    section["workers_sweep"] = levels
    return section


def _full(level: dict[str, Any]) -> bool:
    return bool(level["machine_cpu"] >= MACHINE_FULL * level["cores"])


def machine_full_at(levels: list[dict[str, Any]]) -> list[int]:
    """The levels of a sweep during which the whole machine was busy (MACHINE_FULL of its cores)."""
    return [int(level["streams"]) for level in levels if _full(level)]


def ceiling(levels: list[dict[str, Any]]) -> dict[str, Any]:
    """What a sweep's levels (each with `passed`, its ITL p99 figure, `machine_cpu` and `cores`) show
    of the server's ceiling: `streams`, the largest level passed below the first that failed, and its
    `bound`: "exact" when that failure was the server's; "lower" (the ceiling is at least `streams`),
    with `why`, when no level failed (the sweep passed its top level, the plan's maximum) or the first
    that failed was generator-bound (it may have measured the client) or had the machine full (the
    machine, not the server, may have run out)."""
    failed = [level for level in levels if not level["passed"]]
    first = min(failed, key=lambda level: int(level["streams"])) if failed else None
    below = int(first["streams"]) if first else None
    best = max(
        (
            int(level["streams"])
            for level in levels
            if level["passed"] and (below is None or level["streams"] < below)
        ),
        default=0,
    )
    found: dict[str, Any] = {"streams": best, "bound": "exact", "why": ""}
    if first is None:
        found |= {
            "bound": "lower",
            "why": f"passed its top level, {best} streams, the plan's maximum: ceiling not reached",
        }
    elif first["itl_p99_ms"].get("generator_bound"):
        found |= {"bound": "lower", "why": f"was generator-bound at its first failing level, {below} streams"}
    elif _full(first):
        found |= {
            "bound": "lower",
            "why": f"had the machine full at its first failing level, {below} streams "
            f"({first['machine_cpu']:.2f} of {first['cores']} cores): it measured this machine",
        }
    return found


def quotient(top: Bound, bottom: Bound) -> Bound:
    """The bound of top / bottom, from the bounds of its parts (a lower bound below the line makes
    an upper bound of the quotient)."""
    flipped = FLIPPED[bottom]
    if top == "exact" or top == flipped:
        return flipped
    return top if flipped == "exact" else "none"


def bounds(results: dict[str, Any]) -> dict[str, Evidence]:
    """The judged figures of `results` that it can only bound, by name: {"bound", "why"} (see
    DEFINITIONS["bounds"]); a figure not named is as measured. The one home of what counts as
    evidence: `targets`, the table and the exit code read it."""
    out: dict[str, Evidence] = {}
    for name in TARGETS:
        found = _found(results, name)
        if isinstance(found, dict) and found.get("generator_bound"):
            out[name] = {
                "bound": BUSY_CLIENT.get(name, "none"),
                "why": f"generator-bound (above {GENERATOR_BOUND} of a core): may have measured the client",
            }
    floor = results.get("framework_process_cpu")
    if floor and floor["min"] < FLOOR_CPU:  # a slowed floor makes the server's share of it look larger
        why = (
            f"the framework floor got {floor['min']:.2f} of a core in a repeat (CPU-bound, it takes one "
            "alone): the machine was busy, which slows the server beside it too, by an amount not measured"
        )
        for name in ("server_vs_framework", "redis_server_vs_framework"):
            if _found(results, name) is not None:
                out[name] = _also(out.get(name), Evidence(bound="none", why=why))
    for name, beaten in FLOORS.items():
        why = beat_its_floor(_found(results, name), beaten)
        if why:
            out[name] = _also(out.get(name), Evidence(bound="none", why=why))
    connections = results.get("connection_scale", {}).get("connections")
    if connections is not None and connections < MEMORY_MIN_CONNECTIONS:
        why = (
            f"too few connections ({connections} < {MEMORY_MIN_CONNECTIONS:,}): the growth of the first "
            "connections is mostly the server's fixed costs (allocator arenas, first-use imports and "
            "caches), not a per-connection figure"
        )
        for name in ("memory_ratio", "redis_memory_ratio"):
            if _found(results, name) is not None:
                out[name] = _also(out.get(name), Evidence(bound="none", why=why))
    missed = results.get("connection_scale", {}).get("server", {}).get("pongs_missed")
    if missed and missed["max"] > 0:  # unanswered pings are the slowest round trips, left out of the p99
        why = f"{missed['max']:g} pings in a repeat had no pong within the ping interval, left out of the p99"
        out["pong_p99_ms"] = _also(out.get("pong_p99_ms"), Evidence(bound="lower", why=why))
    for name, growths in GROWTHS.items():
        if _found(results, name) is None:
            continue
        for part, whose in growths:
            samples = (_anywhere(results, part) or {}).get("samples", [])
            if samples and min(samples) <= 0:
                why = (
                    f"{whose} {part} was {min(samples):g} in a repeat: nothing measured (a growth of "
                    "zero or less), so the ratio over it proves nothing"
                )
                out[name] = _also(out.get(name), Evidence(bound="none", why=why))
    sweeps = {"max_streams_at_50tps": ceiling(results.get("sweep", []))} if "sweep" in results else {}
    if "scale_out" in results:
        sweeps["workers_max_streams_at_50tps"] = ceiling(results["scale_out"]["workers_sweep"])
    if "framework_sweep" in results:
        sweeps["framework_max_streams_at_50tps"] = ceiling(results["framework_sweep"])
    for name, found in sweeps.items():
        if found["bound"] != "exact":
            out[name] = {"bound": found["bound"], "why": found["why"]}
    ratios = (  # a ratio of two sweeps' ceilings: its name, top, bottom, and why a missing bottom
        ("max_streams_vs_framework", "max_streams_at_50tps", "framework_max_streams_at_50tps", "no floor"),
        ("workers_vs_embedded", "workers_max_streams_at_50tps", "max_streams_at_50tps", "no embedded figure"),
    )
    for name, top, bottom, missing in ratios:
        if top in sweeps and bottom in sweeps:
            evidence = _ratio_of_ceilings(_found(results, name), sweeps, top, bottom, missing)
            if evidence is not None:
                out[name] = evidence
    return out


SWEEP_NAMES = {  # how a `why` names each sweep
    "max_streams_at_50tps": "the embedded sweep",
    "framework_max_streams_at_50tps": "the framework's sweep",
    "workers_max_streams_at_50tps": "the workers' sweep",
}


def _ratio_of_ceilings(
    value: float | None, sweeps: dict[str, dict[str, Any]], top: str, bottom: str, missing: str
) -> Evidence | None:
    """What a ratio of two sweeps' ceilings (`sweeps[top]` / `sweeps[bottom]`, each as `ceiling`
    found it) shows: not determined when the bottom passed no level (`value` None: nothing to divide
    by, `missing` says what), else the quotient of their bounds with both whys; None when the ratio
    is as measured."""
    if value is None:
        return Evidence(bound="none", why=f"{SWEEP_NAMES[bottom]} passed no level: {missing} to divide by")
    bound = quotient(sweeps[top]["bound"], sweeps[bottom]["bound"])
    if bound == "exact":
        return None
    whys = [f"{SWEEP_NAMES[key]} {sweeps[key]['why']}" for key in (bottom, top) if sweeps[key]["why"]]
    return Evidence(bound=bound, why="; ".join(whys))


FLOORS: dict[str, Literal["below", "above"]] = {  # judged ratios to a floor the server cannot beat:
    "ttft_ratio": "below",  # a server TTFT under the served framework's (server_vs_framework's floor
    # has its own sign of disturbance, FLOOR_CPU: it runs in process, CPU-bound)
}


def beat_its_floor(found: Any, beaten: Literal["below", "above"]) -> str:
    """Why a ratio of a figure to its floor shows the floor disturbed, or "": every repeat beyond 1
    on the `beaten` side by more than the repeats' spread (max - min: its best repeat moved by that
    much is still beyond 1), or its median repeat beyond 1 by more than BEAT_TOLERANCE (the figure
    judged is then a disturbed repeat's). Nothing beats its floor, so the floor was starved or
    slowed, not beaten."""
    if not isinstance(found, dict) or not found.get("samples"):
        return ""
    low, high, median = float(found["min"]), float(found["max"]), float(found["median"])
    spread = high - low
    # The repeats as the table and the target line show them (0.882, not the unrounded 0.882406).
    shown = f"({shown_figure(low)}-{shown_figure(high)})"
    if beaten == "below" and high + spread < 1:
        side = f"below 1 in every repeat {shown}, by more than their spread ({spread:.3g})"
    elif beaten == "above" and low - spread > 1:
        side = f"above 1 in every repeat {shown}, by more than their spread ({spread:.3g})"
    elif beaten == "below" and median < 1 - BEAT_TOLERANCE:
        side = f"its median repeat at {shown_figure(median)}, more than {BEAT_TOLERANCE:.0%} below 1"
    elif beaten == "above" and median > 1 + BEAT_TOLERANCE:
        side = f"its median repeat at {shown_figure(median)}, more than {BEAT_TOLERANCE:.0%} above 1"
    else:
        return ""
    return f"the server beat its floor, {side}: the floor was disturbed (starved or slowed), not beaten"


def _also(known: Evidence | None, more: Evidence) -> Evidence:
    """Two findings on one figure together: one bound, or none when they point opposite ways."""
    if known is None:
        return more
    bound: Bound = known["bound"] if known["bound"] == more["bound"] else "none"
    return Evidence(bound=bound, why=f"{known['why']}; {more['why']}")


def judge(op: str, target: float, value: float, bound: Bound = "exact") -> str:
    """The verdict, "met", "missed" or "not determined", on `value` against `op target`, the true
    figure being =, >=, <= `value` as `bound` says ("none": neither). A bound on the target's side
    proves it met, on the other side missed; otherwise nothing is proven."""
    holds = value >= target if op == ">=" else value <= target if op == "<=" else value < target
    if bound == "exact":
        return "met" if holds else "missed"
    higher_is_better = op == ">="
    if bound == ("lower" if higher_is_better else "upper"):  # the truth is further on the good side
        return "met" if holds else "not determined"
    if bound == ("upper" if higher_is_better else "lower"):  # ... or further on the bad side
        return "not determined" if holds else "missed"
    return "not determined"


def _found(results: dict[str, Any], name: str) -> Any:
    """The figure `name` of `results` (a scale-out one from its section), or None."""
    return (results.get("scale_out", {}) if name in SCALE_OUT else results).get(name)


def _anywhere(results: dict[str, Any], name: str) -> Any:
    """The figure `name` of `results` or of its scale-out section, or None."""
    return results[name] if name in results else results.get("scale_out", {}).get(name)


def targets(results: dict[str, Any], plan: BenchPlan) -> dict[str, Any]:
    """Each target this plan can judge, on the figure's median and its bound (`bounds`): value,
    target, verdict ("met", "missed", "not determined"), met (the verdict is "met"), and for a
    bounded figure its bound and why. The scale-out ones in a run with the scale-out section."""
    judged = {}
    bounded = bounds(results)
    for name, (op, target) in TARGETS.items():
        found = _found(results, name)
        if not plan.applies(name) or (found is None and name not in bounded):
            continue
        value = found["median"] if isinstance(found, dict) else found
        evidence = bounded.get(name, Evidence(bound="exact", why=""))
        verdict = judge(op, target, value, evidence["bound"]) if value is not None else "not determined"
        judged[name] = {
            "value": value,
            "target": f"{op} {target}",
            "verdict": verdict,
            "met": verdict == "met",
        }
        if evidence["bound"] != "exact":
            judged[name] |= {"bound": evidence["bound"], "why": evidence["why"]}
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


class Terminated(Exception):
    """The bench was sent SIGTERM (a CI timeout, `kill`): its servers and generator processes are
    stopped by the time this is raised, as on Ctrl-C."""


def bench(
    plan: BenchPlan, progress: Callable[[str], None] = print, redis_url: str = "", database_url: str = ""
) -> dict[str, Any]:
    """`run_bench` to its end. SIGTERM to this process alone cancels it as Ctrl-C does (asyncio.run's
    SIGINT handling): every `finally` stops what it started (servers in their own process groups,
    the generator's processes), then Terminated is raised."""

    async def main() -> dict[str, Any]:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        assert task is not None
        terminated = False

        def terminate() -> None:
            nonlocal terminated
            terminated = True
            task.cancel()

        loop.add_signal_handler(signal.SIGTERM, terminate)
        try:
            return await run_bench(plan, progress, redis_url, database_url)
        except asyncio.CancelledError:
            if terminated:
                raise Terminated("terminated") from None
            raise
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    return asyncio.run(main())
