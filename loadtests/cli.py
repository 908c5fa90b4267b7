"""`asp load URL --scenario NAME ...`: Locust headless with ASP users, exact summary and SLO gates."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
SCENARIOS = {"connections": "ConnectionsUser", "throughput": "ThroughputUser", "soak": "SoakUser"}
EXIT_SLO = 3


def locust_command(args: argparse.Namespace, summary: Path) -> tuple[list[str], dict[str, str]]:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        SCENARIOS[args.scenario],
        "--headless",
        "--host",
        args.url,
        "-u",
        str(args.users),
        "-r",
        str(args.spawn_rate),
        "-t",
        args.run_time,
        "--stop-timeout",
        "5",
        "--exit-code-on-error",
        "0",
        "--only-summary",
        "--asp-summary-json",
        str(summary),
        "--asp-scenario",
        args.scenario,
    ]
    for flag, value in [
        ("--asp-token", args.token),
        ("--asp-token-file", args.token_file),
        ("--asp-jwt-secret", args.jwt_secret),
        ("--asp-prompt", args.prompt),
        ("--csv", args.csv),
        ("--html", args.html),
        ("--json-file", args.locust_json.removesuffix(".json") if args.locust_json else None),
    ]:
        if value:
            command += [flag, value]
    if args.scenario == "connections":
        command += [
            "--asp-max-connections",
            str(args.max_connections or args.users),
            "--asp-extra",
            str(args.extra),
            "--asp-hold",
            str(args.hold),
        ]
    if args.ping_interval:
        command += ["--asp-ping-interval", str(args.ping_interval)]
    if args.processes:
        command += ["--processes", str(args.processes)]
    env = dict(os.environ)
    if args.scenario == "connections":
        env["ASP_LOCUST_SHAPE"] = "connections"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(LOCUSTFILE.parents[1]), env.get("PYTHONPATH")]))
    return command, env


def run_load(args: argparse.Namespace) -> tuple[int, dict[str, Any] | None, list[str]]:
    from loadtests.summary import breaches, parse_slo

    bounds = parse_slo(args.slo or "")
    with tempfile.TemporaryDirectory() as scratch:
        summary_path = Path(args.summary_json) if args.summary_json else Path(scratch) / "summary.json"
        command, env = locust_command(args, summary_path)
        result = subprocess.run(
            command, env=env, capture_output=not args.verbose, text=True, timeout=args.timeout
        )
        if result.returncode != 0 or not summary_path.exists():
            detail = (result.stderr or "")[-2000:] if not args.verbose else ""
            return 2, None, [f"locust exited {result.returncode} without a summary. {detail}"]
        summary: dict[str, Any] = json.loads(summary_path.read_text())
    missed = breaches(summary, bounds)
    return (EXIT_SLO if missed else 0), summary, missed


def _load(args: argparse.Namespace) -> int:
    code, summary, messages = run_load(args)
    if summary is not None:
        print(json.dumps({k: v for k, v in summary.items() if k != "definitions"}, indent=2))
        print("definitions:")
        for name, text in summary["definitions"].items():
            print(f"  {name}: {text}")
    for message in messages:
        print(("SLO missed: " if code == EXIT_SLO else "error: ") + message, file=sys.stderr)
    return code


def _bench(args: argparse.Namespace) -> int:
    from loadtests.bench.run import BenchPlan, bench

    plan = BenchPlan.quick() if args.quick else BenchPlan()
    results = bench(plan, progress=lambda text: print(text, file=sys.stderr, flush=True))
    text = json.dumps(results, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    print(text)
    missed = [name for name, target in results["targets"].items() if not target["met"]]
    for name in missed:
        target = results["targets"][name]
        print(f"target missed: {name} = {target['value']} (target {target['target']})", file=sys.stderr)
    return 0


def register(commands: Any) -> None:
    bench_parser = commands.add_parser(
        "bench",
        help="measure the reference server against the floors of its stack",
        description="Measures, in one run on this machine: the transport floor (bare uvicorn/WebSocket), the "
        "framework floor (pydantic-ai in process), and the reference server (one stream, TTFT, a sweep of "
        "concurrent 50 tokens/s streams, memory per idle connection), as ratios against the floors.",
    )
    bench_parser.add_argument("--json", help="write the results here")
    bench_parser.add_argument("--quick", action="store_true", help="a small run (seconds), for smoke tests")
    bench_parser.set_defaults(handler=_bench)

    load = commands.add_parser(
        "load",
        help="load-test an ASP server with Locust",
        description="Run a Locust scenario headless against URL and print its exact summary. Exit 0; 3 when "
        "an --slo is missed; 2 when Locust fails. Plain `locust -f loadtests/locustfile.py` works too.",
    )
    load.add_argument("url")
    load.add_argument("--scenario", choices=sorted(SCENARIOS), default="throughput")
    load.add_argument("--users", type=int, default=10)
    load.add_argument("--spawn-rate", type=float, default=10)
    load.add_argument("--run-time", default="30s", help="Locust duration, e.g. 30s, 2m")
    load.add_argument("--token")
    load.add_argument("--token-file")
    load.add_argument("--jwt-secret")
    load.add_argument("--prompt", help="message of each turn (default: a 50-token stream at 50 tokens/s)")
    load.add_argument("--max-connections", type=int, help="connections scenario: the server's limit")
    load.add_argument("--extra", type=int, default=5, help="connections scenario: attempts beyond the limit")
    load.add_argument("--hold", type=float, default=5.0, help="connections scenario: seconds at the top")
    load.add_argument("--ping-interval", type=float, help="connections/soak: seconds between pings")
    load.add_argument("--processes", type=int, help="Locust worker processes (distributed on this machine)")
    load.add_argument("--summary-json", help="write the summary here")
    load.add_argument(
        "--slo", help="e.g. ttft_p99_ms=500,itl_p99_ms=100,error_rate=0.01,tokens_per_s_min=100"
    )
    load.add_argument("--csv", help="Locust CSV prefix")
    load.add_argument("--html", help="Locust HTML report")
    load.add_argument("--locust-json", help="Locust's own JSON stats file")
    load.add_argument("--timeout", type=float, default=3600, help="kill Locust after this many seconds")
    load.add_argument("--verbose", action="store_true", help="show Locust's output")
    load.set_defaults(handler=_load)
