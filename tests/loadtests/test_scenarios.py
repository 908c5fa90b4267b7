"""Short bounded Locust runs against the real server; the figures must be what they should be."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import asyncpg
import pytest
import redis

from loadtests.cli import bench_exit_code, target_line, targets_summary
from reference_server.server import event_loop_name
from tests.loadtests.asp_load import asp_load as run_asp_load
from tests.loadtests.asp_load import assert_errors_add_up, assert_nothing_fabricated, load_env, plain_locust
from tests.loadtests.servers import Stream, serving
from tests.support.server import SECRET, ServerProcess
from tests.support.services import redis_url, service_url

SUMMARY_KEYS = {
    "scenario",
    "users",
    "duration_s",
    "connections",
    "ttft_ms",
    "itl_ms",
    "tpot_ms",
    "e2e_ms",
    "tokens_per_s",
    "events_per_s",
    "errors",
    "errors_by_kind",
    "error_rate",
    "verdict",
}


def asp_load(
    server: ServerProcess, tmp_path: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], dict]:
    return run_asp_load(server.url, tmp_path, "--jwt-secret", SECRET, *args)


@pytest.fixture(scope="module")
def load_server(tmp_path_factory: pytest.TempPathFactory):
    process = ServerProcess(
        database=tmp_path_factory.mktemp("load") / "asp.db",
        settings={
            "ASP_MAX_CONNECTIONS": "10",
            "ASP_RATE_LIMIT_MESSAGES": "100000",
            "ASP_TOKEN_DELAY_MS": "0",
        },
    ).start()
    yield process
    process.stop()


def test_connections_scenario_admits_exactly_the_limit_and_rejects_the_rest_with_1013(load_server, tmp_path):
    result, summary = asp_load(
        load_server,
        tmp_path,
        "--scenario",
        "connections",
        "--extra",
        "5",
        "--spawn-rate",
        "50",
        "--hold",
        "2",
        "--ping-interval",
        "0.3",
        "--run-time",
        "20s",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # no --max-connections: the limit the server announces, and the header says what is opened
    assert "15 connections, limit 10 (announced by the server) + --extra 5" in result.stderr
    assert summary["connections"]["attempted"] == 15
    assert summary["connections"]["accepted"] == 10
    assert summary["connections"]["rejected_by_code"] == {"1013": 5}
    assert summary["connections"]["dropped_by_code"] == {}
    assert summary["errors"] == 0  # the 5 refusals beyond the limit are the expected outcome
    assert summary["samples"]["ping_ms"] >= 10  # the held connections answered their pings


def test_throughput_scenario_measures_the_paced_stream_it_asked_for(load_server, tmp_path):
    result, summary = asp_load(
        load_server,
        tmp_path,
        "--scenario",
        "throughput",
        "--users",
        "4",
        "--spawn-rate",
        "4",
        "--run-time",
        "10s",  # at least 8 turns of 4 users on a loaded machine too (5 s gave 5 at load 14)
        "--prompt",
        "asp-fixture:slow 20 20",
        "--csv",
        str(tmp_path / "locust"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert set(summary) >= SUMMARY_KEYS
    assert summary["turns"]["succeeded"] >= 8 and summary["errors"] == 0
    # 20 ms per token, as the fixture paces it: never below the pace, and the upper bound only
    # tells a gap between tokens from a whole turn (E2E is about 400 ms) on a starved machine.
    assert 15 <= summary["itl_ms"]["p50"] <= 100
    assert 15 <= summary["tpot_ms"]["p50"] <= 100
    assert summary["e2e_ms"]["p50"] >= 19 * 20
    assert summary["output_tokens"] == 20 * summary["turns"]["succeeded"]
    assert summary["samples"]["ttft_ms"] == summary["turns"]["succeeded"]
    assert_nothing_fabricated(summary)
    assert_errors_add_up(summary)
    assert (tmp_path / "locust_stats.csv").exists()
    assert "definitions" in summary and "vLLM" in summary["definitions"]["tpot_ms"]


def test_a_missed_slo_exits_non_zero_and_a_met_one_exits_zero(load_server, tmp_path):
    common = [
        "--scenario",
        "throughput",
        "--users",
        "2",
        "--spawn-rate",
        "2",
        "--run-time",
        "3s",
        "--prompt",
        "asp-fixture:text 5",
    ]
    missed, _ = asp_load(load_server, tmp_path, *common, "--slo", "ttft_p50_ms=0.001")
    assert missed.returncode == 3 and "verdict: FAIL (exit 3): SLO ttft_p50_ms" in missed.stdout
    met, _ = asp_load(load_server, tmp_path, *common, "--slo", "ttft_p99_ms=5000,error_rate=0.01")
    assert met.returncode == 0, met.stderr[-2000:]


def test_soak_holds_idle_connections_without_drops(load_server, tmp_path):
    result, summary = asp_load(
        load_server,
        tmp_path,
        "--scenario",
        "soak",
        "--users",
        "6",
        "--spawn-rate",
        "6",
        "--run-time",
        "4s",
        "--ping-interval",
        "0.5",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert summary["connections"]["accepted"] == 6
    assert summary["connections"]["dropped_by_code"] == {} and summary["errors"] == 0
    # Every ping answered and measured, and each connection pinged more than once: a user pings on
    # opening and again each 0.5 s. Not a count from the nominal 4 s: a busy machine leaves Locust
    # less of it (36 pings in 3.0 s measured at load 14, 48 in 3.7 s), and the count says nothing
    # more about drops than dropped_by_code does.
    assert summary["pings"] == {"attempted": summary["samples"]["ping_ms"], "failed": 0}
    assert summary["samples"]["ping_ms"] >= 6 * 2


def test_distributed_workers_merge_into_the_same_totals_locust_counts(load_server, tmp_path):
    locust_json = tmp_path / "locust.json"
    result, summary = asp_load(
        load_server,
        tmp_path,
        "--scenario",
        "throughput",
        "--users",
        "4",
        "--spawn-rate",
        "4",
        "--run-time",
        "5s",
        "--processes",
        "2",
        "--prompt",
        "asp-fixture:slow 10 20",
        "--locust-json",
        str(locust_json),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    locust = {entry["name"]: entry for entry in json.loads(locust_json.read_text())}
    assert summary["turns"]["succeeded"] > 0
    assert summary["samples"]["ttft_ms"] == locust["ttft"]["num_requests"] == summary["turns"]["succeeded"]
    assert summary["connections"]["accepted"] == locust["connect"]["num_requests"] == 4


@pytest.mark.parametrize("ui", [[], ["--web-port", "0"]], ids=["headless", "web-ui"])
def test_what_workers_measured_after_their_last_periodic_report_reaches_the_summary(tmp_path, ui):
    """Every turn of a 3 s run ends 1 s after the run has ended: the server answers each run's
    message with a delta, then holds the run until 4 s after the first message of the run came
    (the run time counts from before it). The end of the run stops the users, each finishes its
    turn, so everything measured of a turn is measured after the workers' last periodic report.
    Before, the master quit 0.5 s after asking its workers to, summarised and wrote what it had:
    no turn, exit 1. The summary and Locust's own counts must equal what the server served."""
    served: list[str] = []
    first: list[float] = []
    lock = threading.Lock()

    def held_turns(ws) -> None:
        stream = Stream(ws)
        for run_id in stream.runs():
            with lock:
                if not first:
                    first.append(time.monotonic())
                release = first[0] + 4.0
            stream.send("text_delta", run_id=run_id, delta="t0 ")
            time.sleep(max(0.0, release - time.monotonic()))
            stream.send("text_delta", run_id=run_id, delta="t1 ")
            stream.send("complete", run_id=run_id, finish_reason="stop", usage={"output_tokens": 2})
            with lock:
                served.append(run_id)

    locust_json = tmp_path / "locust.json"
    args = ["--users", "2", "--spawn-rate", "10", "--run-time", "3s", "--processes", "2", *ui]
    args += ["--think-min", "0", "--think-max", "0", "--locust-json", str(locust_json)]
    with serving(held_turns) as url:
        result, summary = run_asp_load(url, tmp_path, "--jwt-secret", "s", *args)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    # one turn per user that sent its message before the run ended (both, unless the machine is
    # too busy to start them within 3 s)
    assert 1 <= len(served) <= 2
    turns = len(served)
    assert summary["turns"] == {"attempted": turns, "succeeded": turns, "failed": 0, "interrupted": 0}
    assert summary["samples"]["e2e_ms"] == turns and summary["output_tokens"] == 2 * turns
    locust = {entry["name"]: entry for entry in json.loads(locust_json.read_text())}
    assert locust["turn"]["num_requests"] == turns
    assert locust["connect"]["num_requests"] == summary["connections"]["accepted"] >= turns


def test_plain_locust_runs_the_locustfile(load_server, tmp_path):
    summary = tmp_path / "plain.json"
    args = ["ThroughputUser", "-u", "2", "-r", "2", "--host", load_server.url, "--only-summary"]
    args += ["--asp-prompt", "asp-fixture:text 3", "--asp-summary-json", str(summary)]
    env = load_env(ASP_LOAD_JWT_SECRET=SECRET)  # secrets through the environment, never argv
    result = plain_locust(args, tmp_path, until=lambda progress: progress["turns_succeeded"] >= 2, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(summary.read_text())["turns"]["succeeded"] > 0


def test_asp_bench_quick_reports_every_figure_against_its_floor(tmp_path):
    """One quick run with the scale-out section on real Redis and PostgreSQL (issue 13)."""
    out = tmp_path / "bench.json"
    admin = service_url("ASP_TEST_DATABASE_URL")
    scale_out = ["--redis-url", redis_url(), "--database-url", admin]
    result = subprocess.run(
        [sys.executable, "-m", "asp_cli.main", "bench", "--quick", "--json", str(out), *scale_out],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.exists(), result.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["event_loop"] == event_loop_name("auto")  # the servers', the floors' and the client's
    # a missed target exits 3, like a missed --slo; this machine may be too busy to meet them all
    assert result.returncode == bench_exit_code(figures), result.stderr[-2000:]
    said = result.stderr.splitlines()
    for name, target in figures["targets"].items():
        assert f"target {'met' if target['met'] else target['verdict'].upper()}: {name}" in result.stderr
        assert target_line(name, target) in said
    # the closing line counts them and gives the exit code
    assert said[-1] == targets_summary(figures["targets"]), result.stderr[-2000:]
    assert said[-1].endswith(f": exit {result.returncode}")
    for name in (
        "framework_deltas_per_s",
        "framework_ttft_ms",
        "framework_process_cpu",
    ):
        assert len(figures[name]["samples"]) >= 3  # in process: no load generator beside it
        assert "generator_cpu" not in figures[name]
    measured = [
        "transport_events_per_s",
        "served_framework_ttft_ms",  # TTFT's floor: the server's agent behind the bare stack
        "served_framework_tokens_per_s",
        "server_events_per_s",
        "server_tokens_per_s",
        "server_ttft_ms",
        "server_vs_framework",
        "ttft_ratio",
        "ttft_ratio_in_process",
    ]
    scale = figures["connection_scale"]
    named = [(name, figures[name]) for name in measured] + [
        (f"{kind} {name}", scale[kind][name])
        for kind in ("bare", "server")
        for name in ("connects_per_s", "pong_p50_ms", "pong_p99_ms", "kib_per_connection")
    ]
    for name, figure in named:
        # each figure measured at least 3 times, with the generator's CPU and the load beside it
        assert len(figure["samples"]) >= 3
        assert None not in figure["samples"], (name, figure, result.stderr[-3000:])
        assert figure["min"] <= figure["median"] <= figure["max"]
        assert len(figure["generator_cpu"]) == len(figure["samples"])
        assert isinstance(figure["generator_bound"], bool)
        assert figure["load_avg"]
    assert figures["transport_events_per_s"]["median"] > 0 and figures["server_events_per_s"]["median"] > 0
    assert scale["connections"] == 30 and scale["server"]["pongs_missed"]["max"] == 0
    assert len(figures["memory_ratio"]["samples"]) >= 3
    # every sweep level measured 3 times; the second level is split over two generator processes
    assert [level["processes"] for level in figures["sweep"]][:2] in ([1, 2], [1])
    for level in figures["sweep"]:
        assert len(level["itl_p99_ms"]["samples"]) == 3
    assert isinstance(figures["max_streams_at_50tps"], int)
    # the quick sweep's top level is 4: passed, it is a lower bound, said so in the JSON and the table
    if all(level["passed"] for level in figures["sweep"]):
        assert figures["max_streams_at_50tps"] == 4
        assert figures["bounds"]["max_streams_at_50tps"]["bound"] == "lower"
        assert "| max_streams_at_50tps | >= 4 (passed its top level" in result.stderr
    assert all("server_cpu" in level for level in figures["sweep"])
    # the framework's own ceiling: the same sweep on the bare stack serving the server's agent
    assert figures["framework_sweep"] and all(
        len(level["itl_p50_ms"]["samples"]) == 3 and level["server_cpu"] > 0
        for level in figures["framework_sweep"]
    )
    floor = figures["framework_max_streams_at_50tps"]
    assert figures["max_streams_vs_framework"] == (
        round(figures["max_streams_at_50tps"] / floor, 3) if floor else None
    )
    assert "| framework_max_streams_at_50tps | " in result.stderr
    assert figures["server_cpu_ms_per_1000_tokens"]["median"] > 0
    # the quick plan judges only the ratios; the absolute targets (and the workers' ratio) need the
    # full sweeps and scale
    assert set(figures["targets"]) == {
        "server_vs_framework",
        "ttft_ratio",
        "memory_ratio",
        "redis_server_vs_framework",
        "cpu_per_1000_tokens_ratio",
        "redis_memory_ratio",
    }
    section = figures["scale_out"]
    for name in (
        "redis_server_tokens_per_s",
        "redis_server_vs_framework",
        "redis_server_cpu_ms_per_1000_tokens",
        "cpu_per_1000_tokens_ratio",
    ):
        assert len(section[name]["samples"]) == 3 and len(section[name]["generator_cpu"]) == 3
        assert section[name]["load_avg"] and section[name]["median"] > 0
    assert len(section["redis_memory_ratio"]["samples"]) == 3
    assert scale["redis_server"]["pongs_missed"]["max"] == 0
    # --workers 2 on Redis swept over the same levels and generator processes, with every CPU beside it
    assert [level["streams"] for level in section["workers_sweep"]] == [2, 4]
    for level in section["workers_sweep"]:
        assert len(level["itl_p99_ms"]["samples"]) == 3 and len(level["generator_cpu_total"]) == 3
        assert level["server_cpu"] > 0 and level["redis_cpu"] >= 0 and level["machine_cpu"] > 0
        assert level["itl_p99_ms"]["load_avg"]
    assert section["workers_vs_embedded"] == round(
        section["workers_max_streams_at_50tps"] / max(1, figures["max_streams_at_50tps"]), 3
    )
    # its own key prefix and database, both gone after the run
    assert not list(redis.Redis.from_url(redis_url()).scan_iter(section["prefix"] + "*"))
    assert section["database"].startswith("asp_bench_") and section["database"] not in _databases(admin)


def _databases(admin: str) -> set[str]:
    async def names() -> set[str]:
        connection = await asyncpg.connect(admin, timeout=5)
        try:
            return {row["datname"] for row in await connection.fetch("SELECT datname FROM pg_database")}
        finally:
            await connection.close()

    return asyncio.run(names())


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (
            ["--redis-url", "redis://:hunter2@127.0.0.1:1/0"],
            "asp bench: --redis-url: cannot reach redis://:***@127.0.0.1:1/0: ",
        ),
        (
            ["--redis-url", "redis://127.0.0.1:6379/0", "--database-url", "sqlite+aiosqlite:///x.db"],
            "asp bench: --database-url: sqlite+aiosqlite:///x.db is not PostgreSQL",
        ),
        (["--database-url", "postgresql://postgres@127.0.0.1/test"], "asp bench: --database-url is the"),
    ],
)
def test_asp_bench_refuses_a_scale_out_url_it_cannot_use_in_one_line(args, complaint):
    """Before any server starts: exit 2, one line naming the flag, no password."""
    result = subprocess.run(
        [sys.executable, "-m", "asp_cli.main", "bench", "--quick", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr.startswith(complaint) and result.stderr.count("\n") == 1, result.stderr
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--json", "/nonexistent/bench.json"], "asp bench: cannot write --json /nonexistent/bench.json"),
        (["--json", "."], "asp bench: cannot write --json .: is a directory"),
        (["--repeats", "abc"], "asp bench: error: argument --repeats: must be a whole number, got 'abc'"),
        (["--connections", "1k"], "asp bench: error: argument --connections: must be a whole number"),
    ],
)
def test_asp_bench_refuses_an_option_it_cannot_use_before_it_measures(tmp_path, args, complaint):
    """Exit 2 and one line before anything starts: a --json that cannot be written ended a full
    run (many minutes) in a traceback, its results lost; a non-number named a function of the CLI."""
    result = subprocess.run(
        [sys.executable, "-m", "asp_cli.main", "bench", "--quick", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr.startswith(complaint) and result.stderr.count("\n") == 1, result.stderr


def _in_session(session: int, pattern: str = "") -> list[str]:
    """The processes of `session` (whose command line matches `pattern`), as `pid command` lines."""
    command = ["pgrep", "-a", "-s", str(session)] + (["-f", "--", pattern] if pattern else [])
    return subprocess.run(command, capture_output=True, text=True).stdout.splitlines()


def _bench_in_its_own_session(tmp_path: Path) -> subprocess.Popen[str]:
    """`asp bench --quick` in a session of its own: every process it starts is found by it."""
    return subprocess.Popen(
        [sys.executable, "-m", "asp_cli.main", "bench", "--quick"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        start_new_session=True,
    )


def _ended_in_one_line(process: subprocess.Popen[str], code: int, line: str) -> None:
    """`process` exits `code` with nothing on stdout and `line` alone on stderr, no traceback from any
    of its processes, and no process of its session outlives it."""
    out, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert out == "" and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == line, err
    deadline = time.monotonic() + 30  # multiprocessing's resource tracker ends on its own, soon after
    while left := _in_session(process.pid):
        assert time.monotonic() < deadline, f"processes of the bench lived on: {left}"
        time.sleep(0.2)


def _kill_session(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for line in _in_session(process.pid):  # a survivor in a process group of its own (a server)
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split()[0]), signal.SIGKILL)


@pytest.mark.parametrize(
    ("sig", "group", "code", "line", "phase"),
    [
        (signal.SIGINT, True, 130, "asp bench: interrupted; no results", ""),
        (signal.SIGINT, False, 130, "asp bench: interrupted; no results", ""),
        (signal.SIGTERM, False, 143, "asp bench: terminated; no results", ""),
        # the bare stack's sweep: its server was once taken out of those the bench stops first
        (signal.SIGINT, False, 130, "asp bench: interrupted; no results", "framework floor: the same sweep"),
    ],
    ids=["ctrl-c", "sigint-to-asp", "sigterm-to-asp", "sigint-in-the-framework-sweep"],
)
def test_asp_bench_interrupted_says_so_in_one_line_and_leaves_no_process(
    tmp_path, sig, group, code, line, phase
):
    """Ctrl-C mid-run: exit 130 and one line, not a KeyboardInterrupt traceback from any process;
    every server and generator process the bench started has ended. A terminal sends Ctrl-C's
    SIGINT to its whole foreground process group (`group`): the generator processes too. SIGTERM to
    the bench alone (a CI timeout, `kill PID`) ends it the same way, exit 143: no process it started
    left behind (servers in their own process groups, generator workers, multiprocessing's manager
    and resource tracker). `phase`: the progress line after which the signal comes ("": the first)."""
    process = _bench_in_its_own_session(tmp_path)
    try:
        assert process.stderr is not None
        said = process.stderr.readline()  # the bench has started measuring
        assert said, "asp bench printed nothing"
        while phase not in said:  # bounded: the bench ends, and stderr with it, within its own limits
            said = process.stderr.readline()
            assert said, f"asp bench ended before {phase!r}"
        time.sleep(1)  # into the measurement: its generator processes at work, a server up
        if group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
        _ended_in_one_line(process, code, line)
    finally:
        _kill_session(process)


@pytest.mark.parametrize("spawned", [1, 3], ids=["manager-starting", "workers-starting"])
def test_ctrl_c_while_the_generator_processes_start_is_one_line_too(tmp_path, spawned):
    """Ctrl-C as the generator's processes are being spawned (multiprocessing's manager first, then
    --quick's 2 workers), before they could ignore SIGINT: before, each child died in a
    KeyboardInterrupt traceback of its imports and the bench in an EOFError or BrokenProcessPool.
    They start with SIGINT blocked now; the bench alone answers it, and stops them."""
    process = _bench_in_its_own_session(tmp_path)
    try:
        deadline = time.monotonic() + 60
        while len(_in_session(process.pid, "spawn_main")) < spawned:  # still importing, if at all
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"asp bench did not start {spawned} generator processes"
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGINT)
        _ended_in_one_line(process, 130, "asp bench: interrupted; no results")
    finally:
        _kill_session(process)


def test_asp_bench_exits_non_zero_when_a_target_is_missed():
    def targets(*met: bool) -> dict:
        return {"targets": {f"t{i}": {"value": 1.0, "target": ">= 1", "met": ok} for i, ok in enumerate(met)}}

    assert bench_exit_code(targets(True, True)) == 0
    assert bench_exit_code(targets(True, False)) == 3


def test_a_refused_secret_is_one_line_and_exit_2_before_locust_starts(load_server, tmp_path):
    """The probe connection is closed 4001: a usage error, as `asp check` says it, not a run."""
    secret = "not-the-servers-secret"
    result, summary = run_asp_load(
        load_server.url, tmp_path, "--jwt-secret", secret, "--users", "2", "--run-time", "30s"
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "asp load: the server refused the credentials (4001): check --jwt-secret (or ASP_LOAD_JWT_SECRET)\n"
    )
    assert summary == {}  # Locust never started


def test_connections_reads_the_announced_limit_and_the_flag_wins(load_server):
    """The probe reads `session.limits.max_connections` (10 here) unless --max-connections gives one."""
    from loadtests.cli import Plan, probe

    announced = Plan(load_server.url, 1, SECRET, "", {}, 1.0)
    assert probe(announced) == [] and announced.max_connections == 10
    given = Plan(load_server.url, 1, SECRET, "", {}, 1.0, max_connections=7)
    probe(given)
    assert given.max_connections == 7 and given.limit_source == "--max-connections"
