"""Two real server processes on one Redis and one PostgreSQL act as one ASP server (issue 13).

Every test starts its own pair on free ports, with its own Redis key prefix and its own PostgreSQL
database (tests/support/services.py), so parallel runs never meet.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from conformance.wire import AspClient, Closed
from tests.support.server import SECRET, ServerProcess
from tests.support.services import Pair, fresh_database, fresh_prefix, redis_url


def slots_in_use(pair: Pair) -> int:
    prefix = pair.prefix  # type: ignore[attr-defined]
    return int(redis.Redis.from_url(redis_url()).hlen(f"{prefix}:conn:users"))


async def until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll `predicate` every 50 ms until it holds. `timeout` is an upper bound for two CI runs on
    two cores: a quiet machine returns as soon as the condition holds, at no cost."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def attempt(server: ServerProcess, user: str) -> tuple[str, AspClient]:
    client = await AspClient.open(server.url, token=server.token(user))
    try:
        event = await client.recv(10)
    except Closed:
        return f"closed:{client.close_code}", client
    return event["type"], client


async def test_the_connection_limit_is_exact_across_processes(pair: Pair) -> None:
    """2N concurrent connects spread over both processes: exactly N admitted, the rest 1013."""
    a, b = pair(max_connections=4)
    for round_ in range(20):
        outcomes = await asyncio.gather(
            *[attempt(a if i % 2 else b, f"crowd-{round_}-{i}") for i in range(8)]
        )
        kinds = sorted(kind for kind, _ in outcomes)
        assert kinds == ["closed:1013"] * 4 + ["session"] * 4, (round_, kinds)
        for _, client in outcomes:
            await client.close()
        await until(lambda: slots_in_use(pair) == 0)


async def test_one_connection_per_user_across_processes(pair: Pair) -> None:
    """One user connecting to both processes at once: exactly one connection survives, the other
    is closed with 4002 (ASP-DUP-001) by whichever process holds it."""
    a, b = pair()
    for round_ in range(20):
        user = f"twin-{round_}"
        outcomes = await asyncio.gather(attempt(a, user), attempt(b, user))
        clients = [client for _, client in outcomes]
        closing = {asyncio.ensure_future(client.wait_closed(10)): client for client in clients}
        done, pending = await asyncio.wait(closing, return_when=asyncio.FIRST_COMPLETED)
        assert [task.result() for task in done] == [4002], round_
        for task in pending:
            task.cancel()
        (survivor,) = [closing[task] for task in pending]
        # both were admitted before either saw `session`: nothing can close the survivor any more
        await survivor.send({"type": "ping", "id": "alive"})
        assert (await survivor.expect("pong"))["id"] == "alive"
        for client in clients:
            await client.close()
    await until(lambda: slots_in_use(pair) == 0)


async def test_the_rate_limit_holds_across_processes(pair: Pair) -> None:
    """ASP-LIM-009 per user, whichever process the messages reach: 3 runs in the window, then
    rate_limited with a retry_after_ms within the window. The history holds the runs of both."""
    a, b = pair(rate_limit_messages=3, rate_limit_window_ms=60_000)
    for index, server in enumerate((a, b, a)):
        client = await AspClient.open(server.url, token=server.token("rater"))
        await client.expect("session")
        await client.send({"type": "message", "content": f"asp-fixture:text {index}"})
        await client.collect_run()
        await client.close()
    client = await AspClient.open(b.url, token=b.token("rater"))
    await client.expect("session")
    history = str((await client.expect("history"))["messages"])  # PostgreSQL: every process's runs
    assert all(f"asp-fixture:text {index}" in history for index in range(3))
    await client.send({"type": "message", "content": "asp-fixture:text 9"})
    error = await client.expect("error")
    assert error["code"] == "rate_limited" and 1 <= error["retry_after_ms"] <= 60_000
    await client.close()


async def test_a_killed_process_gives_its_slots_back_within_the_lease(pair: Pair) -> None:
    """A SIGKILLed process neither releases nor retires: its slots are freed when its lease expires,
    at most `lease_ttl_ms` after its last refresh, which came before the kill. Every admission runs
    the script that first frees expired leases, so no refresh period of the survivor is waited for:
    an attempt begun a lease TTL after the kill is admitted. The poll step covers a refresh the
    killed process sent just before it died and Redis ran just after. How long each attempt takes
    (seconds, on a starved machine) does not matter: an attempt is judged by when it began."""
    lease_ttl_s, poll_s = 1.5, 0.2
    a, b = pair(max_connections=2, lease_ttl_ms=int(lease_ttl_s * 1000))
    held = [await attempt(a, f"ghost-{i}") for i in range(2)]
    assert [kind for kind, _ in held] == ["session", "session"]
    kind, _ = await attempt(b, "newcomer")
    assert kind == "closed:1013"
    a.process.kill()  # type: ignore[union-attr]  # SIGKILL: no release, no retire
    a.process.wait(5)  # type: ignore[union-attr]
    killed_at = time.monotonic()
    while True:
        began = time.monotonic()
        kind, client = await attempt(b, "newcomer")
        if kind == "session":
            break
        after = began - killed_at
        assert after < lease_ttl_s + poll_s, (
            f"refused {after:.2f} s after the kill; the lease is {lease_ttl_s} s"
        )
        await asyncio.sleep(poll_s)
    await client.close()
    for _, old in held:
        old.abort()


@contextlib.contextmanager
def two_workers(tmp_path: Path, max_connections: int) -> Iterator[ServerProcess]:
    """`asp serve --workers 2` on a fresh Redis prefix and PostgreSQL database, started."""
    with fresh_database() as database_url:
        settings = {"ASP_REDIS_URL": redis_url(), "ASP_REDIS_PREFIX": fresh_prefix()}
        settings |= {"ASP_DATABASE_URL": database_url, "ASP_MAX_CONNECTIONS": str(max_connections)}
        yield ServerProcess(
            database=tmp_path / "unused.db",
            settings=settings,
            module="asp_cli.main",
            args=("serve", "--workers", "2"),
        ).start()


def test_asp_serve_workers_runs_processes_that_act_as_one(tmp_path: Path) -> None:
    """`asp serve --workers 2`: two worker processes on one port; the limit is theirs together."""
    with two_workers(tmp_path, max_connections=3) as server:
        try:
            children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
            assert len(children) == 2

            async def crowd() -> list[str]:
                outcomes = await asyncio.gather(*[attempt(server, f"w-{i}") for i in range(8)])
                for _, client in outcomes:
                    await client.close()
                return sorted(kind for kind, _ in outcomes)

            assert asyncio.run(crowd()) == ["closed:1013"] * 5 + ["session"] * 3
        finally:
            assert server.stop(timeout=45) == 0  # two workers drain in turn; slow on a starved machine


def sockets_by_process(pids: list[str], port: int, state: str) -> dict[str, set[str]]:
    """The TCP sockets (inodes) on local `port` in `state` (/proc/net/tcp: "0A" listening, "01"
    established) that each of `pids` holds."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == state:
            inodes.add(fields[9])
    held: dict[str, set[str]] = {}
    for pid in pids:
        links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        held[pid] = {link[8:-1] for link in links if link.startswith("socket:[")} & inodes
    return held


def test_each_worker_listens_on_its_own_socket_and_connections_spread_over_them(tmp_path: Path) -> None:
    """SO_REUSEPORT: one listening socket per worker, so the kernel spreads a burst of connects
    evenly (on one shared socket the worker that wakes first takes most of a burst)."""
    connections = 100
    with two_workers(tmp_path, max_connections=connections) as server:
        try:
            port = int(server.url.split(":")[2].split("/")[0])
            workers = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
            listening = sockets_by_process(workers, port, "0A")
            assert [len(inodes) for inodes in listening.values()] == [1, 1]
            assert len(set.union(*listening.values())) == 2  # two sockets, not one shared
            assert sockets_by_process([str(server.pid)], port, "0A") == {str(server.pid): set()}

            async def burst() -> dict[str, int]:
                outcomes = await asyncio.gather(*[attempt(server, f"spread-{i}") for i in range(connections)])
                try:
                    assert [kind for kind, _ in outcomes] == ["session"] * connections
                    return {pid: len(held) for pid, held in sockets_by_process(workers, port, "01").items()}
                finally:
                    for _, client in outcomes:
                        await client.close()

            spread = asyncio.run(burst())
            assert sum(spread.values()) == connections
            # binomial(100, 1/2): below 25 on either side once in about 3 million runs
            assert min(spread.values()) >= 25, spread
        finally:
            assert server.stop(timeout=45) == 0


def test_several_workers_need_redis(tmp_path: Path) -> None:
    server = ServerProcess(
        database=tmp_path / "asp.db", module="asp_cli.main", args=("serve", "--workers", "2")
    )
    with pytest.raises(RuntimeError, match="ASP_REDIS_URL"):
        server.start()
    assert server.process is not None and server.process.wait(5) == 2


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("failure", ["lifespan", "model"])
def test_an_application_that_does_not_start_exits_2_and_leaves_no_worker(
    tmp_path: Path, workers: int, failure: str
) -> None:
    """The start fails after 'listening' was printed (in its lifespan, or building the app: a model
    that cannot run): exit 2 with one line, not 0, and with several workers no restart loop (each
    worker would fail the same way) and no worker left behind."""
    env = {
        **os.environ,
        "ASP_JWT_SECRET": SECRET,
        "ASP_PORT": "0",
        "ASP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'asp.db'}",
        "ASP_REDIS_URL": redis_url(),
        "ASP_REDIS_PREFIX": fresh_prefix(),
    }
    mode = []
    if failure == "model":  # the reference app, on a model no process can build
        env["ASP_MODEL"] = "nosuch:model"
        mode = ["model"]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.failing_start", str(workers), *mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 2, (out, err)
    assert "listening" in out
    last = err.strip().splitlines()[-1]
    if failure == "model" and workers == 1:  # the one process says why, as before listening
        assert last == "error: ASP_MODEL=nosuch:model: Unknown model: nosuch:model", err
    else:
        assert last.startswith("error: ") and "the application did not start" in last, err
    assert "starting another" not in err
    if failure == "model":  # the reason, in its one line, not a worker's traceback
        assert "Traceback" not in err and "ASP_MODEL=nosuch:model: Unknown model" in err, err
    assert subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True).returncode == 1, (
        "a worker lived on"
    )


def test_workers_end_with_a_supervisor_that_was_killed(tmp_path: Path) -> None:
    """SIGKILL the `asp serve --workers 2` supervisor: its workers drain and exit (they served on
    unsupervised, holding the port, before)."""
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "ASP_JWT_SECRET": SECRET,
        "ASP_PORT": "0",
        "ASP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'asp.db'}",
        "ASP_REDIS_URL": redis_url(),
        "ASP_REDIS_PREFIX": fresh_prefix(),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "asp_cli.main", "serve", "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        started = 0
        for line in process.stdout:
            started += "startup complete" in line
            if started == 2:
                break
        workers = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        assert len(workers) == 2
        process.kill()
        process.wait(10)

        def running(pid: str) -> bool:  # an exited worker not yet reaped by its new parent is done
            with contextlib.suppress(FileNotFoundError):
                return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            return False

        deadline = time.monotonic() + 60  # a drain, on a machine that may be busy
        while any(running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        alive = [pid for pid in workers if running(pid)]
        assert not alive, f"workers {alive} served on without their supervisor"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_model_that_cannot_run_is_one_line_before_listening(tmp_path: Path, workers: str) -> None:
    """`asp serve --model M` for a model this installation cannot run: refused before listening, in
    one line, exit 2; with --workers no worker is started (each would fail and be restarted)."""
    env = {
        **os.environ,
        "ASP_JWT_SECRET": SECRET,
        "ASP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'asp.db'}",
        "ASP_REDIS_URL": redis_url(),
        "ASP_REDIS_PREFIX": fresh_prefix(),
    }
    serve = [sys.executable, "-m", "asp_cli.main", "serve", "--port", "0"]
    result = subprocess.run(
        [*serve, "--workers", workers, "--model", "x:y"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr == "error: ASP_MODEL=x:y: Unknown model: x:y\n", result.stderr


async def test_a_plain_connect_gets_the_conversation_bound_last_on_either_process(pair: Pair) -> None:
    """ASP-SES-009 across processes: a binding written through one process is what a plain connect
    to the other gets next, however often that one answered the user before (no stale cached
    binding: with shared state the store caches none)."""
    a, b = pair()

    async def conversation_of(server: ServerProcess, user: str, requested: str | None = None) -> str:
        client = await AspClient.open(server.url, token=server.token(user), conversation_id=requested)
        try:
            return str((await client.expect("session"))["conversation_id"])
        finally:
            await client.close()

    first = await conversation_of(a, "bound-ab", "new")
    for _ in range(2):
        assert await conversation_of(a, "bound-ab") == first
    second = await conversation_of(b, "bound-ab", "new")
    assert await conversation_of(a, "bound-ab") == second
    assert await conversation_of(b, "bound-ab", first) == first  # named, bound on b
    assert await conversation_of(a, "bound-ab") == first
    assert await conversation_of(a, "bound-other") not in (first, second)
