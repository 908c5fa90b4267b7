"""Profile the reference server under one bench scenario: `python -m loadtests.bench.profile SCENARIO`.

Starts the server as `asp bench` does (its own process, same settings), under py-spy when
`--py-spy FILE` is given (`py-spy record --format raw|speedscope`, sampling 250 Hz, idle frames
left out), drives one scenario with the bench's client code in this process (on the bench's event
loop, the server's), stops the server and prints the scenario's figures. Scenarios:

- `connect N`: N authenticated connections opened 50 at a time (token check, binding, history);
- `stream N`: one instant stream of N tokens, three times, each beside the framework in this process
  (`asp bench`'s server_vs_framework): tokens/s and tokens per event (frame), the server's and this
  client's CPU over the long stream, the framework's deltas/s and CPU per delta, and the server's
  CPU per token above the framework's (medians of the three, each with its min and max);
- `ttft N`: N one-token runs, each on a fresh conversation (the time-to-first-token path);
- `pings N`: N connections held 10 s, each sending an application ping every 2 s (pong times);
- `paced N`: N concurrent streams of 100 tokens at 50 tokens/s (the per-event path), after ten short
  warm-up streams; also the server's CPU microseconds per event (connects, runs and storage included)
  and, with --redis-url, the Redis server's (INFO cpu: other users of that Redis included);
- `memory N`: N idle connections; with `--tracemalloc FILE` the server runs under tracemalloc and
  writes the top allocation sites of the connections' memory to FILE.

`--setting ASP_NAME=VALUE` gives the server a setting over the bench's (a shell's ASP_* variables
never reach it), e.g. `--setting ASP_COALESCE_MS=0` for one frame per token.

With `--redis-url URL` (and `--database-url URL`) the server keeps its state in Redis, as
`asp bench --redis-url` starts its scale-out servers: a fresh key prefix (and a fresh PostgreSQL
database beside the one named), every key deleted (and the database dropped) at the end.

py-spy needs ptrace (a container may need `--cap-add SYS_PTRACE`); install it with pip.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from loadtests.bench import measure, scale
from loadtests.bench.processes import Served, start
from loadtests.bench.run import server_env
from reference_server.auth import mint
from reference_server.config import Settings, env_name
from reference_server.server import event_loop_factory

TRACEMALLOC_ENTRY = "loadtests.bench.traced_server"


async def _scenario(
    name: str, count: int, served: Served, secret: str, redis_url: str = ""
) -> dict[str, Any]:
    users = 2 if name == "stream" else count
    tokens = [mint(f"profile-{name}-{i}-{secrets.token_hex(3)}", secret) for i in range(users)]
    if name == "connect":
        cpu_before = _cpu_s(served.process.pid)
        began = time.perf_counter()
        sockets, connects = await measure._open_many(served.url, tokens, expect_session=True)
        wall = time.perf_counter() - began
        cpu = _cpu_s(served.process.pid) - cpu_before
        await measure._close_all(sockets)
        return {
            "connects_per_s": count / wall,
            # the opens only (not the closes); under --py-spy this is py-spy's own CPU
            "server_cpu_us_per_connect": cpu / count * 1e6,
            "connect_p50_ms": measure.percentile(connects, 0.5),
            "connect_p99_ms": measure.percentile(connects, 0.99),
        }
    if name == "ttft":
        cpu_before = _cpu_s(served.process.pid)
        outcome = await measure.server_stream(served.url, tokens, 200)
        # per one-token run, its connection's open included (and the 200-token stream before them)
        cpu_per_run = (_cpu_s(served.process.pid) - cpu_before) / max(1, count - 1) * 1e6
        if os.environ.get("ASP_PROFILE_MODULE"):  # an instrumented wrapper: ask it for its figures
            served.process.send_signal(signal.SIGUSR2)
            await asyncio.sleep(0.5)
        return {
            "ttft_p50_ms": outcome["ttft_p50_ms"],
            "tokens_per_s": outcome["tokens_per_s"],
            "server_cpu_us_per_run": cpu_per_run,
        }
    if name == "stream":
        return await _stream_beside_framework(served, tokens, count)
    if name == "paced":
        warm = [mint(f"profile-warm-{i}-{secrets.token_hex(3)}", secret) for i in range(10)]
        await measure.paced_streams(served.url, warm, 0, 10, 20, 20, 1)  # lazy imports, caches
        redis_before = await scale.redis_cpu_s(redis_url) if redis_url else 0.0
        cpu_before = _cpu_s(served.process.pid)
        runs = await measure.paced_streams(served.url, tokens, 0, count, 100, 20, 1)
        cpu = _cpu_s(served.process.pid) - cpu_before
        gaps = runs[0]["gaps_ms"]
        if redis_url:  # the Redis server's share, others' use of that Redis included
            redis_cpu = await scale.redis_cpu_s(redis_url) - redis_before
            extra = {"redis_cpu_us_per_event": redis_cpu / (count * 100) * 1e6}
        else:
            extra = {}
        return extra | {
            "complete": runs[0]["complete"],
            "itl_p50_ms": measure.percentile(gaps, 0.5),
            "itl_p99_ms": measure.percentile(gaps, 0.99),
            "itl_mean_ms": statistics.fmean(gaps),
            # connects, runs and storage included; under --py-spy this is py-spy's own CPU
            "server_cpu_us_per_event": cpu / (count * 100) * 1e6,
        }
    if name == "pings":
        held = await measure.idle_connections(served.url, tokens, True, 10.0, 2.0, None)
        if os.environ.get("ASP_PROFILE_MODULE"):  # an instrumented wrapper: ask it for its figures
            served.process.send_signal(signal.SIGUSR2)
            await asyncio.sleep(0.5)
        pongs = held["pong_ms"]
        return {
            "connects_per_s": count / (held["finished_at"] - held["opened_at"]),
            "pong_p50_ms": measure.percentile(pongs, 0.5),
            "pong_p99_ms": measure.percentile(pongs, 0.99),
            "missed": held["missed"],
            "opened": [round(held["opened_at"], 2), round(held["finished_at"], 2)],
        }
    if name == "memory":
        traced = bool(os.environ.get("ASP_TRACEMALLOC_FILE"))
        if traced:
            served.process.send_signal(signal.SIGUSR1)  # the baseline snapshot
            await asyncio.sleep(2.0)
        before = served.rss_kib()
        sockets, _ = await measure._open_many(served.url, tokens, expect_session=True)
        await asyncio.sleep(1.5)
        after = served.rss_kib()
        if traced:
            served.process.send_signal(signal.SIGUSR1)
            await asyncio.sleep(3.0)
        await measure._close_all(sockets)
        return {"kib_per_connection": (after - before) / count}
    raise SystemExit(f"unknown scenario {name}")


async def _stream_beside_framework(served: Served, tokens: list[str], count: int) -> dict[str, Any]:
    """The stream scenario: what server_vs_framework is made of. The server's CPU is read around
    the long stream only (between the barrier waits of `measure.server_stream`), as `asp bench`
    reads it; the framework runs the server's agent in this process, as the bench's does."""
    columns: dict[str, list[float]] = {}
    for _ in range(3):
        barrier = threading.Barrier(2)
        call = asyncio.ensure_future(measure.server_stream(served.url, tokens, count, barrier))
        await asyncio.to_thread(barrier.wait)
        cpu_before = _cpu_s(served.process.pid)
        await asyncio.to_thread(barrier.wait)
        server_cpu = _cpu_s(served.process.pid) - cpu_before
        outcome = await call
        framework = await measure.framework_in_process("server", count, 3)
        tokens_streamed = max(1, outcome["tokens"])
        # the framework in process is CPU-bound (about one core): CPU per delta is 1/deltas_per_s
        framework_us = framework["cpu"] / framework["deltas_per_s"] * 1e6
        server_us = server_cpu / tokens_streamed * 1e6
        figures = {
            "server_vs_framework": outcome["tokens_per_s"] / framework["deltas_per_s"],
            "server_tokens_per_s": outcome["tokens_per_s"],
            "tokens_per_event": outcome["tokens_per_s"] / outcome["events_per_s"],
            "server_cpu_us_per_token": server_us,
            "server_cpu_share": server_cpu * outcome["tokens_per_s"] / tokens_streamed,
            "client_cpu_share": outcome["cpu"],
            "framework_deltas_per_s": framework["deltas_per_s"],
            "framework_cpu_us_per_delta": framework_us,
            "framework_cpu_share": framework["cpu"],
            "server_us_per_token_over_framework": server_us - framework_us,
        }
        for key, value in figures.items():
            columns.setdefault(key, []).append(value)
    return {
        key: [round(statistics.median(values), 3), round(min(values), 3), round(max(values), 3)]
        for key, values in columns.items()
    }


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process `pid` has used so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenario", choices=["connect", "ttft", "stream", "paced", "pings", "memory"])
    parser.add_argument("count", type=int)
    parser.add_argument("--py-spy", help="write py-spy's profile of the server here")
    parser.add_argument("--format", default="raw", help="py-spy output format (raw, speedscope, flamegraph)")
    parser.add_argument("--tracemalloc", help="memory: write the top allocation sites here")
    parser.add_argument(
        "--redis-url", default="", help="the server's state in this Redis (a fresh key prefix)"
    )
    parser.add_argument(
        "--database-url", default="", help="with --redis-url: history in a fresh PostgreSQL database"
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="ASP_NAME=VALUE",
        help="a server setting over the bench's (e.g. ASP_COALESCE_MS=0); repeatable",
    )
    args = parser.parse_args()
    known = {env_name(field) for field in Settings.model_fields}
    unknown = [
        setting for setting in args.setting if setting.split("=", 1)[0] not in known or "=" not in setting
    ]
    if unknown:
        parser.error(f"--setting takes ASP_NAME=VALUE of a server setting, not {unknown[0]!r}")
    if args.database_url and not args.redis_url:
        parser.error("--database-url needs --redis-url")
    if args.redis_url:
        found = scale.problem(args.redis_url, args.database_url)
        if found:
            parser.error(found)
    secret = secrets.token_urlsafe(32)
    scratch = Path(tempfile.mkdtemp())
    env = server_env(scratch / "profile.db", secret, args.count + 50)
    env |= dict(setting.split("=", 1) for setting in args.setting)
    module = os.environ.get("ASP_PROFILE_MODULE", "reference_server")  # a wrapper that instruments it
    if args.tracemalloc:
        env["ASP_TRACEMALLOC_FILE"] = str(Path(args.tracemalloc).resolve())
        os.environ["ASP_TRACEMALLOC_FILE"] = env["ASP_TRACEMALLOC_FILE"]
        module = TRACEMALLOC_ENTRY
    prefix: list[str] = []
    if args.py_spy:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        prefix = [
            spy,
            "record",
            *os.environ.get("PYSPY_EXTRA", "").split(),
            "-r",
            "250",
            "--format",
            args.format,
            "-o",
            args.py_spy,
            "--",
        ]
    try:
        # the bench's loop (measure.EVENT_LOOP, the server's too): the framework beside the server
        # ran on asyncio's while the server ran on uvloop's, so server_vs_framework compared two loops
        with asyncio.Runner(loop_factory=event_loop_factory(measure.EVENT_LOOP)) as runner:
            figures = runner.run(_profiled(args, env, module, prefix, secret))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()})


async def _profiled(
    args: argparse.Namespace, env: dict[str, str], module: str, prefix: list[str], secret: str
) -> dict[str, Any]:
    """Start the server (on a fresh Redis prefix with --redis-url), run the scenario, stop it; the
    scenario's figures and `event_loop`, the loop this client ran on (`asyncio` or `uvloop`)."""
    async with contextlib.AsyncExitStack() as stack:
        if args.redis_url:
            shared = await stack.enter_async_context(scale.provisioned(args.redis_url, args.database_url))
            env |= shared.env()
        served = start(module, env, prefix=prefix)
        try:
            figures = await _scenario(args.scenario, args.count, served, secret, args.redis_url)
            return figures | {"event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0]}
        finally:
            served.process.send_signal(signal.SIGINT)
            try:
                served.process.wait(30)
            except subprocess.TimeoutExpired:
                served.process.kill()


if __name__ == "__main__":
    main()
