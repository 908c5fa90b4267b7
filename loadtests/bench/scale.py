"""Scale-out figures (issue 13): the reference server with its state in Redis against the embedded
one, in one run on this machine.

    python -m loadtests.bench.scale --redis-url redis://127.0.0.1:6379/0 \
        [--database-url postgresql+asyncpg://...] [--json FILE] [--quick]

Figures (the `asp bench` client code of loadtests.bench.measure, one client process):

- `redis_server_vs_framework`: tokens/s of one instant stream over a real WebSocket with the state
  in Redis (every event written to the session's Redis Stream) / pydantic-ai's deltas/s in process
  (target >= 0.8; `server_vs_framework` is the embedded server's, for reference);
- `cpu_per_1000_tokens_ratio`: server CPU (user + system, from /proc) per 1,000 tokens of that
  stream, Redis / embedded (target <= 1.3);
- `redis_memory_ratio`: RSS growth per idle authenticated connection with Redis / the bare stack's
  (uvicorn + FastAPI, same WebSocket settings) (target <= 1.5);
- `workers_vs_embedded`: the most concurrent 50 tokens/s streams with pooled ITL p99 < 100 ms and
  every stream complete, `asp serve --workers 2` on Redis / one embedded process (target >= 1.5),
  with the load generator's own CPU (CPU seconds per wall second; near 1.0 it, not the server, was
  the limit) and the machine's load average beside it.

Exit 0 when every target is met, 3 when one is missed (as `asp bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from loadtests.bench import measure, run
from loadtests.bench.processes import Served, start
from reference_server.auth import mint

TARGETS = {
    "redis_server_vs_framework": (">=", 0.8),
    "cpu_per_1000_tokens_ratio": ("<=", 1.3),
    "redis_memory_ratio": ("<=", 1.5),
    "workers_vs_embedded": (">=", 1.5),
}


def cpu_s(served: Served) -> float:
    """CPU seconds (user + system) of the server process and its live children (workers)."""
    pids, total = [served.process.pid], 0.0
    while pids:
        pid = pids.pop()
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as children:
                pids.extend(int(child) for child in children.read().split())
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def start_workers(env: dict[str, str], workers: int, timeout: float = 60) -> Served:
    """`asp serve --workers N` with `env`, once it announced its URL and its workers started."""
    process = subprocess.Popen(
        [sys.executable, "-m", "asp_cli.main", "serve", "--workers", str(workers)],
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"listening on (ws://\S+)", process.stdout.readline())
        if match:
            time.sleep(3)  # the workers' lifespan start-up after the announcement
            return Served(process, match.group(1))
        if process.poll() is not None:
            break
    process.kill()
    raise RuntimeError("asp serve --workers did not start")


def server_env(
    scratch: Path, name: str, secret: str, connections: int, shared: dict[str, str]
) -> dict[str, str]:
    """The bench's server settings (`run.server_env`), with the `shared` state's URLs over them."""
    return run.server_env(scratch / f"{name}.db", secret, connections) | shared


async def kib_per_connection(served: Served, tokens: list[str], expect_session: bool) -> float:
    await asyncio.sleep(0.5)
    before = served.rss_kib()
    sockets, _ = await measure._open_many(served.url, tokens, expect_session)
    await asyncio.sleep(1.0)
    after = served.rss_kib()
    await measure._close_all(sockets)
    return (after - before) / len(tokens)


async def stream(served: Served, secret: str, label: str, tokens: int) -> dict[str, float]:
    users = [mint(f"scale-{label}-{i}", secret) for i in range(4)]
    began = cpu_s(served)
    result = await measure.server_stream(served.url, users, tokens)
    streamed = tokens + min(tokens, 500) + len(users) - 1  # the stream, its warm-up, the TTFT samples
    return {
        "tokens_per_s": result["tokens_per_s"],
        "cpu_ms_per_1000_tokens": (cpu_s(served) - began) * 1e6 / streamed,
    }


async def sweep(
    url: str, secret: str, label: str, levels: tuple[int, ...]
) -> tuple[int, list[dict[str, Any]]]:
    best, outcomes = 0, []
    for level in levels:
        tokens = [mint(f"scale-{label}-{level}-{i}", secret) for i in range(level)]
        began = time.perf_counter()
        (run,) = await measure.paced_streams(url, tokens, 0, level, 100, 20, repeats=1)
        p99 = measure.percentile(run["gaps_ms"], 0.99) if run["gaps_ms"] else None
        outcomes.append(
            {
                "streams": level,
                "complete": run["complete"],
                "itl_p99_ms": p99,
                "generator_cpu": run["cpu"],
                "seconds": time.perf_counter() - began,
                "load_average": os.getloadavg()[0],
            }
        )
        print(f"  {label} {level} streams: {run['complete']} complete, ITL p99 {p99} ms", file=sys.stderr)
        if run["complete"] != level or p99 is None or p99 >= 100:
            break
        best = level
    return best, outcomes


async def figures(redis_url: str, database_url: str, quick: bool) -> dict[str, Any]:
    secret = secrets.token_urlsafe(32)
    connections = 50 if quick else 1000
    stream_tokens = 300 if quick else 5000
    levels = (2, 4) if quick else (25, 50, 75, 100, 125, 150, 200, 250, 300)
    shared = {"ASP_REDIS_URL": redis_url, "ASP_REDIS_PREFIX": f"asp-scale-{secrets.token_hex(4)}"}
    if database_url:
        shared["ASP_DATABASE_URL"] = database_url
    results: dict[str, Any] = {}
    framework = await measure.framework_floor("server", stream_tokens, 5)
    results["framework_deltas_per_s"] = framework["deltas_per_s"]
    bare = start("loadtests.bench.bare_server")
    try:
        results["bare_kib_per_connection"] = await kib_per_connection(bare, [""] * connections, False)
    finally:
        bare.stop()
    with TemporaryDirectory() as scratch:
        for label, extra in (("embedded", {}), ("redis", shared)):
            served = start("reference_server", server_env(Path(scratch), label, secret, connections, extra))
            try:
                tokens = [mint(f"scale-idle-{label}-{i}", secret) for i in range(connections)]
                results[f"{label}_kib_per_connection"] = await kib_per_connection(served, tokens, True)
            finally:
                served.stop()
            served = start(
                "reference_server", server_env(Path(scratch), label + "s", secret, connections, extra)
            )
            try:
                measured = await stream(served, secret, label, stream_tokens)
                results[f"{label}_tokens_per_s"] = measured["tokens_per_s"]
                results[f"{label}_cpu_ms_per_1000_tokens"] = measured["cpu_ms_per_1000_tokens"]
                if label == "embedded":
                    results["embedded_max_streams_at_50tps"], results["embedded_sweep"] = await sweep(
                        served.url, secret, label, levels
                    )
            finally:
                served.stop()
        served = start_workers(server_env(Path(scratch), "w2", secret, max(levels), shared), 2)
        try:
            results["workers2_max_streams_at_50tps"], results["workers2_sweep"] = await sweep(
                served.url, secret, "workers2", levels
            )
        finally:
            served.stop()
    results["server_vs_framework"] = results["embedded_tokens_per_s"] / results["framework_deltas_per_s"]
    results["redis_server_vs_framework"] = results["redis_tokens_per_s"] / results["framework_deltas_per_s"]
    results["cpu_per_1000_tokens_ratio"] = (
        results["redis_cpu_ms_per_1000_tokens"] / results["embedded_cpu_ms_per_1000_tokens"]
    )
    results["memory_ratio"] = results["embedded_kib_per_connection"] / results["bare_kib_per_connection"]
    results["redis_memory_ratio"] = results["redis_kib_per_connection"] / results["bare_kib_per_connection"]
    results["workers_vs_embedded"] = results["workers2_max_streams_at_50tps"] / max(
        1, results["embedded_max_streams_at_50tps"]
    )
    results["targets"] = {
        name: {
            "value": round(results[name], 3),
            "target": f"{op} {bound}",
            "met": results[name] >= bound if op == ">=" else results[name] <= bound,
        }
        for name, (op, bound) in TARGETS.items()
    }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench.scale", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--redis-url", required=True)
    parser.add_argument(
        "--database-url", default="", help="history of the Redis runs (default: SQLite files)"
    )
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--quick", action="store_true", help="seconds, for smoke tests")
    args = parser.parse_args(argv)
    results = asyncio.run(figures(args.redis_url, args.database_url, args.quick))
    text = json.dumps(results, indent=2, default=float)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    print(text)
    for name, target in results["targets"].items():
        print(
            f"target {'met' if target['met'] else 'MISSED'}: {name} = {target['value']} ({target['target']})"
        )
    return 0 if all(t["met"] for t in results["targets"].values()) else 3


if __name__ == "__main__":
    sys.exit(main())
