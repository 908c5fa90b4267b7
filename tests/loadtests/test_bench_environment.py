"""The bench's servers are measured on the bench's own settings, whatever the caller's shell holds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from pathlib import Path

import pytest
import redis

from conformance.wire import AspClient
from loadtests.bench.processes import DidNotStart, Served, start
from loadtests.bench.run import Bench, BenchPlan, run_bench
from loadtests.cli import did_not_start
from reference_server.auth import mint
from tests.support.services import fresh_prefix, redis_url


async def test_the_embedded_server_under_the_bench_keeps_no_state_in_a_redis_of_the_caller_s_shell(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prefix = fresh_prefix()
    monkeypatch.setenv("ASP_REDIS_URL", redis_url())
    monkeypatch.setenv("ASP_REDIS_PREFIX", prefix)
    bench = Bench(BenchPlan.quick(), generator=None, scratch=tmp_path, progress=lambda _: None)  # type: ignore[arg-type]
    served = bench.start_server(10)  # as run_bench starts "server", the embedded one
    client = redis.Redis.from_url(redis_url())
    try:
        ws = await AspClient.open(served.url, token=mint("env-user", bench.secret), conversation_id="new")
        await ws.expect("session")
        await ws.close()
        keys = list(client.scan_iter(f"{prefix}:*"))
    finally:
        served.stop()
        leftovers = list(client.scan_iter(f"{prefix}:*"))
        if leftovers:
            client.delete(*leftovers)
        client.close()
    assert keys == [], f"the embedded server wrote {len(keys)} keys under the shell's ASP_REDIS_PREFIX"


def _processes_with(marker: str) -> list[int]:
    """Pids of live server processes (`python -m ...`; not multiprocessing's resource tracker, which
    is this test process's own) whose environment holds `marker` (inherited from this test)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in environ and state != "Z" and b"-m" in command:
            found.append(int(entry.name))
    return found


async def test_a_server_that_does_not_start_leaves_no_bench_server_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marker = f"bench-leak-{secrets.token_hex(6)}"
    monkeypatch.setenv("BENCH_LEAK_MARKER", marker)

    def does_not_start(self: Bench, connections: int, redis: bool = False) -> Served:
        raise RuntimeError("reference_server did not start")  # as loadtests.bench.processes.start says

    monkeypatch.setattr(Bench, "start_server", does_not_start)
    plan = BenchPlan.quick()
    plan.transport_events = 200
    with pytest.raises(RuntimeError, match="did not start"):
        await run_bench(plan, progress=lambda _: None)
    await asyncio.sleep(1)
    left = _processes_with(f"BENCH_LEAK_MARKER={marker}")
    for pid in left:  # this test's own leftovers only: they carry its marker
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert left == [], f"{len(left)} bench processes left running after the failed start"


async def test_an_unreachable_redis_or_a_model_of_the_caller_s_shell_does_not_stop_the_bench_s_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Before: the embedded server read the shell's ASP_REDIS_URL, found nobody there and exited 2;
    the bench died on a RuntimeError traceback, exit 1."""
    monkeypatch.setenv("ASP_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("ASP_MODEL", "no-such-provider:model")
    bench = Bench(BenchPlan.quick(), generator=None, scratch=tmp_path, progress=lambda _: None)  # type: ignore[arg-type]
    served = bench.start_server(10)
    try:
        ws = await AspClient.open(served.url, token=mint("env-user", bench.secret), conversation_id="new")
        await ws.expect("session")
        await ws.close()
    finally:
        served.stop()


def test_a_server_that_refuses_its_settings_is_one_line_naming_whose_they_were(tmp_path: Path) -> None:
    """A server that exits says why (its own one line, from its stderr); `asp bench` exits 2 only when
    the settings refused were the user's, else 1 and says the fault is the bench's."""
    settings = {"ASP_JWT_SECRET": "short", "ASP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"}
    with pytest.raises(DidNotStart) as refused:
        start("reference_server", settings | {"ASP_PORT": "0"})
    failed = refused.value
    assert (failed.exit_code, failed.users_settings) == (2, "")
    assert "ASP_JWT_SECRET" in failed.said and "short" not in failed.said, failed.said
    line, code = did_not_start(failed)
    assert code == 1 and line.startswith(
        "asp bench: reference_server did not start: exited 2: error: ASP_JWT_SECRET (--jwt-secret)"
    )
    assert line.endswith("a fault of the bench, not of your configuration") and "\n" not in line
    failed.users_settings = "--redis-url"  # as Bench says of a scale-out server
    line, code = did_not_start(failed)
    assert code == 2 and line.endswith("(check --redis-url)"), line


def test_a_server_that_says_nothing_is_given_up_on_after_its_time_and_killed() -> None:
    """Before: `start` blocked on reading the server's next line, past its timeout, for ever."""
    with pytest.raises(DidNotStart) as silent:
        start("http.server", args=["0", "--bind", "127.0.0.1"], timeout=3)
    assert silent.value.exit_code is None
    assert str(silent.value) == "http.server did not start: said nothing within 3 s (a busy machine?)"


@pytest.mark.parametrize("workers", [0, 2], ids=["server", "supervisor-of-workers"])
def test_a_server_that_exits_after_announcing_its_url_is_given_up_on_at_once(workers: int) -> None:
    """Before, `start` returned a server that had announced its URL and exited (as `asp serve
    --workers N` does when a worker's application cannot start), after waiting out its whole time
    for workers that would never come: the measurement then failed on a dead server."""
    announce_and_exit = "echo 'listening on ws://127.0.0.1:9/ws/chat'; echo 'a worker failed' >&2; exit 2"
    began = time.monotonic()
    with pytest.raises(DidNotStart) as gone:
        start("unused", prefix=["sh", "-c", announce_and_exit, "sh"], workers=workers)
    assert time.monotonic() - began < 10
    assert (gone.value.exit_code, gone.value.said) == (2, "a worker failed")
    assert str(gone.value) == "unused did not start: exited 2: a worker failed"


async def test_a_fresh_server_that_does_not_start_leaves_none_of_the_others_running(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`fresh_servers` starts a repeat's servers together: when one refuses to start (here the bench's
    own setting, a connection limit under 1, a real exit 2), those that did start are stopped."""
    marker = f"bench-leak-{secrets.token_hex(6)}"
    monkeypatch.setenv("BENCH_LEAK_MARKER", marker)
    bench = Bench(BenchPlan.quick(), generator=None, scratch=tmp_path, progress=lambda _: None)  # type: ignore[arg-type]
    with pytest.raises(DidNotStart, match="ASP_MAX_CONNECTIONS"):
        await bench.fresh_servers(-100, ("bare", "server"))
    left = _processes_with(f"BENCH_LEAK_MARKER={marker}")
    for pid in left:  # this test's own leftovers only: they carry its marker
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert left == [], f"{len(left)} bench servers left running after one did not start"
