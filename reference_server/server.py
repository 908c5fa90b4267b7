"""`asp serve` and `python -m reference_server`: uvicorn tuned for token streams, on a socket bound
before start so port 0 works.

Development mode (`asp serve --dev` only, never a setting): the start-up prints a short-lived token
and the demo page gets its development sign-in (POST /dev/token). It is refused unless the server
binds a loopback address, and says so loudly. Without it nothing prints a token and nobody can
mint one over HTTP, whatever else is set (ASP-SEC-001), and ASP_JWT_SECRET is required: a secret
generated per start, which only development mode prints, would let nobody connect.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging.config
import math
import multiprocessing
import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

import uvicorn
from uvicorn._types import ASGIApplication
from uvicorn.config import STARTUP_FAILURE

from reference_server.agent.factory import build_model
from reference_server.app import create_app
from reference_server.auth import ALGORITHM, mint
from reference_server.config import Settings
from reference_server.launch import StartupError, asp_command, bind_problem
from reference_server.logs import logging_config
from reference_server.stores import open_problem, redis_open_problem
from reference_server.transport import accept_backlog, protocols, raise_file_limit


@dataclass(frozen=True)
class DevMode:
    """Development mode: printed tokens and POST /dev/token, with tokens this short-lived."""

    user: str = "dev"
    token_ttl_s: int = 3600


# `asp check` reads the secret it mints tokens with from this variable (conformance/cli.py), which
# keeps it out of process lists; named here because the server and the kit never import each other.
CHECK_SECRET = "ASP_CHECK_JWT_SECRET"
# The kit tests ASP-AUTH-012's alg clause only when told which algorithms the server takes.
CHECK_ALGORITHMS = f" --jwt-algorithms {ALGORITHM}"


def check_options(settings: Settings) -> str:
    """The options of the printed `asp check` line: the server's algorithm, and a --max-wait (the
    kit's cap on one real-time wait, seconds) with room over this server's idle timeout, so the
    line proves the idle cases too (the kit waits only what the server announced plus its grace)."""
    return f"{CHECK_ALGORITHMS} --max-wait {math.ceil(settings.idle_timeout_ms / 1000 * 1.25)}"


class NotLoopback(StartupError):
    """Development mode asked for on an address others can reach."""


class NoSecret(StartupError):
    """A server outside development mode without ASP_JWT_SECRET: a generated secret nobody knows
    would let nobody connect."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int, share_port: bool = False, listen: bool = True) -> socket.socket:
    """A TCP socket bound to (host, port), inheritable, listening unless `listen` is False.

    `share_port`: SO_REUSEPORT, so that each worker process of one server listens on a socket of
    its own on the same port and the kernel spreads new connections evenly over them (on one shared
    socket a burst goes to whichever worker wakes first: 58/42 measured at 200 connects). Raises
    OSError when it cannot bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted sockets only then, and without it
    # Nagle's algorithm holds the second small frame of a reply for the peer's delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    if share_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if port:
        # A fixed port may be rebound while the old one is in TIME_WAIT. Never for port 0: Linux lets
        # SO_REUSEADDR sockets share a port until one listens, so two servers starting at once could
        # be handed the same ephemeral port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(accept_backlog())  # listening from now on: the port is ours before the app starts
    sock.set_inheritable(True)
    return sock


def event_loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes the event loop the server runs on for `choice` (Settings.event_loop), resolved as
    uvicorn resolves it: `auto` is uvloop's when uvloop is installed, else asyncio's. The bench runs
    its in-process framework floor and its bare stack on the same loop, so its ratios compare the
    server with the framework, not two event loops."""
    factory = uvicorn.Config("", loop=choice, log_config=None).get_loop_factory()
    return factory or asyncio.new_event_loop


def event_loop_name(choice: str) -> str:
    """`uvloop` or `asyncio`: the loop `choice` resolves to on this machine (the bench records it)."""
    return "uvloop" if event_loop_factory(choice).__module__.startswith("uvloop") else "asyncio"


def uvicorn_config(
    settings: Settings, app: ASGIApplication | None = None, dev_token_ttl_s: int | None = None
) -> uvicorn.Config:
    heartbeat_s = settings.heartbeat_interval_ms / 1000
    http, websocket = protocols(settings)
    # Long enough for the runs' grace period, their storing and the 1012 closes that follow.
    drain_s = (settings.shutdown_grace_ms + settings.send_timeout_ms) / 1000 + 2
    return uvicorn.Config(
        app or create_app(settings, dev_token_ttl_s=dev_token_ttl_s),
        loop=settings.event_loop,
        http=http,  # request heads have a deadline, stalled ones a cap (transport.py)
        ws=websocket,  # websockets' sans-I/O protocol: measured fastest (field notes); closes as ASP says
        ws_max_size=settings.max_message_bytes,  # larger messages close with 1009 (ASP-LIM-003)
        ws_per_message_deflate=False,
        ws_ping_interval=heartbeat_s,  # ASP-HB-001: a Ping every heartbeat_interval_ms ...
        ws_ping_timeout=heartbeat_s,  # ... and 4005 when none is answered within it
        log_config=logging_config(json_lines=settings.log_json, access_log=settings.access_log),
        access_log=settings.access_log,
        timeout_graceful_shutdown=math.ceil(drain_s),
        backlog=accept_backlog(),
        lifespan="on",
    )


def announce(settings: Settings, port: int, out: TextIO, dev: DevMode | None) -> None:
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    print(f"ASP reference server listening on ws://{host}:{port}{settings.path}", file=out)
    print(f"Demo page: http://{host}:{port}/", file=out)
    url = f"ws://{host}:{port}{settings.path}"
    if dev is None:  # ASP_JWT_SECRET is set (serve refuses to start without it)
        print("Tokens: `asp token --user NAME` with this server's ASP_JWT_SECRET.", file=out)
        print(
            f'Check it: {CHECK_SECRET}="$ASP_JWT_SECRET" {asp_command()} check {url}'
            + check_options(settings),
            file=out,
        )
        out.flush()
        return
    if settings.generated_secret:
        print(
            "No ASP_JWT_SECRET set: generated a secret for this run; tokens die with the process.", file=out
        )
    minutes = dev.token_ttl_s // 60
    rule = "!" * 78
    print(rule, file=out)
    print("!! DEVELOPMENT MODE (--dev): anyone who can reach this port can sign in as any user", file=out)
    print(
        f"!! through the demo page (POST /dev/token). Tokens live {minutes} min. Never in production.",
        file=out,
    )
    print(rule, file=out)
    token = mint(dev.user, settings.secret, ttl_seconds=dev.token_ttl_s)
    print(f"Development token (user {dev.user!r}, {minutes} min): {token}", file=out)
    print(f"Connect: {url}?token=<token>", file=out)
    # The secret of a development server (generated per start unless ASP_JWT_SECRET is set, and
    # then not echoed) goes into a line the user can paste: the quick start leads into a check.
    secret = shlex.quote(settings.secret) if settings.generated_secret else '"$ASP_JWT_SECRET"'
    print(f"Check it: {CHECK_SECRET}={secret} {asp_command()} check {url}{check_options(settings)}", file=out)
    out.flush()


class NotShared(StartupError):
    """Several worker processes asked for without the shared state they need (ASP_REDIS_URL)."""


class AppDidNotStart(StartupError):
    """The application's start (the lifespan: storage, shared state) failed after the server
    announced it was listening; uvicorn has logged why."""


# A worker's exit code when its application did not start: uvicorn's own (STARTUP_FAILURE), and
# gunicorn's WORKER_BOOT_ERROR, on which its arbiter halts instead of starting another worker that
# would fail the same way.
WORKER_START_FAILED = STARTUP_FAILURE


def run_app(
    settings: Settings, app: ASGIApplication | None, dev_token_ttl_s: int | None, sock: socket.socket
) -> None:
    """uvicorn on `sock` until a stop signal. Raises AppDidNotStart when the application's start
    failed (uvicorn exits STARTUP_FAILURE then, or returns unstarted)."""
    server = uvicorn.Server(uvicorn_config(settings, app, dev_token_ttl_s=dev_token_ttl_s))
    try:
        server.run(sockets=[sock])
    except SystemExit as exited:
        if exited.code != STARTUP_FAILURE:
            raise
        raise AppDidNotStart("the application did not start; its error is logged above") from None
    if not server.started:
        raise AppDidNotStart("the application did not start; its error is logged above")


def run_worker(
    settings: Settings,
    app: ASGIApplication | None,
    dev_token_ttl_s: int | None,
    port: int,
    listening: Callable[[], None],
) -> None:
    """A worker process's body: `run_app` on a socket of its own on `port` (SO_REUSEPORT; the
    supervisor's holds the port without listening), calling `listening` once it listens. Exits
    WORKER_START_FAILED when it cannot listen or its application did not start, whether its
    lifespan failed or building it refused (a StartupError, such as ModelUnavailable, logged in its
    one line): any other exit would be restarted, and fail again."""
    try:
        sock = bind(settings.host, port, share_port=True)
    except OSError as refused:
        logging.getLogger("asp.server").error(
            "worker could not listen on port %s: %s", port, refused.strerror
        )
        sys.exit(WORKER_START_FAILED)
    listening()
    try:
        run_app(settings, app, dev_token_ttl_s, sock)
    except AppDidNotStart:
        sys.exit(WORKER_START_FAILED)
    except StartupError as refused:
        logging.getLogger("asp.server").error("worker %s: %s", os.getpid(), refused)
        sys.exit(WORKER_START_FAILED)


def serve(
    settings: Settings,
    out: TextIO = sys.stdout,
    app: ASGIApplication | None = None,
    dev: DevMode | None = None,
    workers: int = 1,
) -> None:
    """Run until SIGINT/SIGTERM. `app` wraps or replaces the reference app (tests use it for faults).
    `workers` > 1 forks that many processes, each listening on the port (SO_REUSEPORT), sharing state
    through Redis.

    Raises NotLoopback when `dev` is given and settings.host is not a loopback address, NoSecret
    when `dev` is not given and ASP_JWT_SECRET is not set, StartupError when the database or Redis
    cannot be opened or the address cannot be bound, ModelUnavailable when settings.model cannot run
    here, NotShared when `workers` > 1 without settings.redis_url.
    """
    if dev is not None and not is_loopback(settings.host):
        raise NotLoopback(
            "--dev lets anyone who can reach the server sign in as any user; "
            f"bind a loopback address, not {settings.host}"
        )
    if workers > 1 and not settings.redis_url:
        raise NotShared(
            "several worker processes act as one server only on shared state: set ASP_REDIS_URL "
            "(and ASP_DATABASE_URL to a PostgreSQL database)"
        )
    logging.config.dictConfig(logging_config(json_lines=settings.log_json, access_log=settings.access_log))
    raise_file_limit()
    if dev is None and settings.generated_secret:
        raise NoSecret(
            "ASP_JWT_SECRET is not set, so nobody could get a token for this server: set it (32 bytes "
            "or more) and mint tokens with `asp token --user NAME` under the same ASP_JWT_SECRET; "
            "to try the server out, `asp serve --dev`"
        )
    database = open_problem(settings.database_url)  # before listening: one line, not a traceback
    if database is not None:
        raise StartupError(f"ASP_DATABASE_URL (--database-url): {database}")
    shared = redis_open_problem(settings.redis_url) if settings.redis_url else None
    if shared is not None:
        raise StartupError(f"ASP_REDIS_URL (--redis-url): {shared}")
    if settings.model != "offline":
        # Each process builds its app, and so its model, after 'listening': a model that cannot run
        # here is refused now, in one line, not by every worker in turn (ModelUnavailable).
        build_model(settings)
    try:
        # Several workers: the supervisor's socket holds the port (with port 0, picks it) and never
        # listens; each worker listens on its own, and the server is announced once all of them do.
        sock = bind(settings.host, settings.port, share_port=workers > 1, listen=workers <= 1)
    except OSError as refused:
        raise bind_problem(settings.host, settings.port, refused) from None
    port = sock.getsockname()[1]
    ttl = dev.token_ttl_s if dev else None
    if workers <= 1:
        announce(settings, port, out, dev)
        run_app(settings, app, ttl, sock)
        return
    try:
        supervise(
            workers,
            lambda listening: run_worker(settings, app, ttl, port, listening),
            all_listening=lambda: announce(settings, port, out, dev),
        )
    finally:
        sock.close()


PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies


def end_with_supervisor(supervisor: int) -> None:
    """In a worker, on Linux: SIGTERM when the supervisor dies, SIGKILL included (prctl
    PR_SET_PDEATHSIG), so the worker drains and exits instead of serving on unsupervised, holding
    the port a new `asp serve` needs. Elsewhere, or when prctl is refused, nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        refused = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if not refused and os.getppid() != supervisor:  # it died before the request took effect
        os._exit(0)


def supervise(
    workers: int, run: Callable[[Callable[[], None]], None], all_listening: Callable[[], None] = lambda: None
) -> None:
    """Fork `workers` processes that each `run(listening)` (uvicorn on a socket of its own, calling
    `listening` once it listens); `all_listening()` once every first worker has. SIGTERM/SIGINT
    are passed on to them (each drains as one server does, ASP-CLS-005); a worker that dies is
    replaced, but one whose application did not start (exit WORKER_START_FAILED) stops them all
    and raises AppDidNotStart: another would fail the same way. Forked before any event loop
    exists, so the settings (and a generated secret) are the same in every worker; a worker ends
    with the supervisor, even a SIGKILLed one (`end_with_supervisor`)."""
    context = multiprocessing.get_context("fork")
    stopping: int | None = None  # the signal that stops the workers
    parent = os.getpid()
    listening = context.Semaphore(0)  # released by each worker once it listens
    waiting_for = workers  # first workers not listening yet

    def worker(listening: Callable[[], None]) -> None:
        end_with_supervisor(parent)
        run(listening)

    def start() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=worker, args=(listening.release,), name="asp-worker")
        process.start()
        return process

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if os.getpid() != parent:  # a worker forked after this was installed: its own uvicorn stops it
            return
        stopping = signum
        terminate()

    def terminate() -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    processes = [start() for _ in range(workers)]
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    failed: int | None = None  # the pid of a worker whose application did not start
    while stopping is None and failed is None:
        if waiting_for and listening.acquire(timeout=0.5):
            waiting_for -= 1
            if not waiting_for:
                all_listening()
            continue
        if not waiting_for:
            time.sleep(0.5)
        for index, process in enumerate(processes):
            if stopping is not None or process.is_alive():
                continue
            if process.exitcode == WORKER_START_FAILED:
                failed = process.pid
                terminate()
                break
            logging.getLogger("asp.server").warning(
                "worker %s exited with %s; starting another", process.pid, process.exitcode
            )
            processes[index] = start()
    for process in processes:
        process.join()
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    if failed is not None and stopping is None:
        raise AppDidNotStart(
            f"worker process {failed}: the application did not start (its error is logged above); "
            "stopped the other workers"
        )
    if stopping is not None:
        signal.raise_signal(stopping)  # as a single server does once drained (reference_server.launch)
