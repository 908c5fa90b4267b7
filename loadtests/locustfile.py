"""Locust users for ASP. `locust -f loadtests/locustfile.py --host ws://HOST:PORT/ws/chat ...`.

Scenarios are user classes: ConnectionsUser (with ConnectionsShape ramping past the limit),
ThroughputUser (conversations with think time), SoakUser (idle connections that ping). Every
request reaches Locust's statistics through its request event: `connect`, `ttft`, `turn`, `ping`,
and each close code under its own name (request type CLOSE). Exact percentiles and every failure
by kind are kept apart (loadtests.metrics) and merged from workers on the master; the summary, its
SLO verdict and exit code (loadtests.summary) go to --asp-summary-json, the web UI's ASP tabs and
the process's exit code. Secrets come from ASP_LOAD_JWT_SECRET / ASP_LOAD_TOKEN, not argv.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import time
from typing import Any

import gevent
from locust import LoadTestShape, User, between, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import STATE_CLEANUP, STATE_MISSING, STATE_STOPPED, MasterRunner, WorkerRunner
from locust.user.task import LOCUST_STATE_STOPPING

from conformance.pacing import RatePacer
from conformance.terms import ServerTerms
from loadtests import webui
from loadtests.client import Closed, Failure, SyncAspClient
from loadtests.credentials import SECRET_ENV, TOKEN_ENV, Credentials, read_token_file, redact
from loadtests.metrics import Recorder
from loadtests.summary import SloError, build_summary, parse_slo
from spec.registry import close_code

RECORDER = Recorder()
SCENARIO_OF_CLASS = {"ThroughputUser": "throughput", "ConnectionsUser": "connections", "SoakUser": "soak"}
_user_numbers = itertools.count()
PACED_USER = "user"  # a pacer per simulated user: one identity each
_CLOCK: dict[str, float] = {}
_PROGRESS: list[Any] = []  # the greenlet writing progress lines
_STATE: dict[str, Any] = {"credentials": Credentials(), "bounds": {}}
# Distributed runs. Locust's master asks its workers to quit and gives their last reports 0.5 s: what
# a user measured after its worker's last periodic report (every 3 s), a turn finished while the
# users stop, was lost. Each worker now sends a final report as its users have stopped, marked
# FINAL_MARK, and the master waits for every worker's before the test counts as stopped (and so
# before the summary is written); a worker that has not stopped yet is asked to (FINAL_REPORT).
FINAL_REPORT = "asp_final_report"  # master -> worker: stop your users, then send your final report
FINAL_MARK = "asp_final"  # in a worker's report: its users have stopped, nothing follows
FINAL_GRACE_S = 10.0  # beyond --stop-timeout, for the last reports to arrive
_WORKERS: dict[str, set[str]] = {"expected": set(), "reported": set()}  # on the master, by client id


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument(
        "--asp-token",
        default="",
        env_var=TOKEN_ENV,
        help=f"bearer token for every user (better in {TOKEN_ENV}: argv is public)",
        include_in_web_ui=False,
    )
    parser.add_argument("--asp-token-file", default="", help="tokens, one per line, one per user")
    parser.add_argument(
        "--asp-jwt-secret",
        default="",
        env_var=SECRET_ENV,
        help=f"mint a token per user (HS256; better in {SECRET_ENV}: argv is public)",
        include_in_web_ui=False,
    )
    parser.add_argument("--asp-prompt", default="asp-fixture:slow 50 20", help="message each turn sends")
    parser.add_argument("--asp-think-min", type=float, default=0.5, help="think time between turns, min s")
    parser.add_argument("--asp-think-max", type=float, default=1.5, help="think time between turns, max s")
    parser.add_argument(
        "--asp-event-timeout", type=float, default=30.0, help="longest silence within a turn or ping, s"
    )
    parser.add_argument("--asp-max-connections", type=int, default=0, help="connections scenario: the limit")
    parser.add_argument("--asp-extra", type=int, default=5, help="connections scenario: attempts beyond it")
    parser.add_argument(
        "--asp-hold", type=float, default=10.0, help="connections scenario: seconds at the top"
    )
    parser.add_argument("--asp-ping-interval", type=float, default=0.0, help="s between pings (0: heartbeat)")
    parser.add_argument(
        "--asp-slo", default="", help="e.g. ttft_p99_ms=500,error_rate=0.01 (verdict, exit code)"
    )
    parser.add_argument("--asp-summary-json", default="", help="write the exact summary here at the end")
    parser.add_argument("--asp-progress-file", default="", help="append JSON progress lines here")
    parser.add_argument("--asp-progress-interval", type=float, default=2.0, help="s between progress lines")
    parser.add_argument("--asp-scenario", default="", help="scenario name recorded in the summary")
    parser.add_argument("--asp-user-prefix", default="load", help="user names when minting")
    parser.add_argument(
        "--asp-no-pace",
        action="store_true",
        help="do not hold turns back under the rate limit the server announces (to load its limiter)",
    )


@events.init.add_listener
def _init(environment: Environment, web_ui: Any = None, **_: Any) -> None:
    options = environment.parsed_options
    if options is None:  # library use: configure _STATE yourself
        return
    try:
        _STATE["bounds"] = parse_slo(options.asp_slo)
        tokens = read_token_file(options.asp_token_file) if options.asp_token_file else []
    except (SloError, OSError) as bad:
        sys.stderr.write(f"error: {bad}\n")
        raise SystemExit(2) from None
    _STATE["credentials"] = Credentials(
        jwt_secret=options.asp_jwt_secret,
        token=options.asp_token,
        tokens=tokens,
        user_prefix=options.asp_user_prefix,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_redact_record)
    if isinstance(environment.runner, WorkerRunner):
        environment.runner.register_message(FINAL_REPORT, _on_final_report_asked, concurrent=True)
        # Locust's statistics as JSON are the master's: a worker writing its own (empty, all sent
        # to the master) at its exit, to the same file, replaced the master's.
        options.json_file = None
    if web_ui is not None:
        webui.install(web_ui, lambda: current_summary(environment))
        if options.asp_progress_file:
            gevent.spawn(_announce_web_ui, web_ui, options.asp_progress_file)


def _redact_record(record: logging.LogRecord) -> bool:
    """Keeps every log line free of the secrets (websocket-client logs the subprotocols it offered)."""
    message = record.getMessage()
    clean = redact(message, _STATE["credentials"].secrets())
    if clean != message:
        record.msg, record.args = clean, ()
    return True


def _write_progress(path: str, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def _announce_web_ui(web_ui: Any, path: str) -> None:
    for _ in range(600):  # the server starts after the init event; bounded wait, 30 s
        server = web_ui.server
        if server is not None and server.started and server.server_port:
            _write_progress(
                path, {"event": "web_ui", "url": f"http://{server.server_host}:{server.server_port}/"}
            )
            return
        gevent.sleep(0.05)


def _fire(
    environment: Environment,
    kind: str,
    name: str,
    seconds: float,
    length: int = 0,
    exception: BaseException | None = None,
) -> None:
    environment.events.request.fire(
        request_type=kind,
        name=name,
        response_time=seconds * 1000,
        response_length=length,
        exception=exception,
        context={},
    )


def _failed(environment: Environment, counter: str, name: str, failure: Failure, seconds: float) -> None:
    """Count one failed operation under its kind and report it to Locust."""
    RECORDER.count(counter)
    RECORDER.count(f"error:{failure.kind}")
    if isinstance(failure, Closed):
        RECORDER.count(f"dropped:{failure.code}")
        _fire(environment, "CLOSE", str(failure.code), 0.0, exception=failure)
    _fire(environment, "WS", name, seconds, exception=failure)


def _unexpected(error: Exception) -> Failure:
    """A failure of the load tool itself, counted so it can never pass for a measurement."""
    secrets = _STATE["credentials"].secrets()
    return Failure("client_error", redact(f"{type(error).__name__}: {error}", secrets))


class AspUser(User):
    """Holds one authenticated connection; a failed or refused connection is counted and stops it."""

    abstract = True
    client: SyncAspClient | None = None
    session: dict[str, Any]  # the `session` event of the last connection
    heartbeat_s = 15.0
    # 1013 on connecting is the expected outcome of this scenario (the connections scenario's
    # attempts beyond the limit), not an error.
    refusal_expected = False

    def on_start(self) -> None:
        self.number = next(_user_numbers)
        self.session = {}

    def open(self) -> None:
        """Connect (from a task: StopUser in on_start would be logged as a crash)."""
        environment = self.environment
        options = environment.parsed_options
        token = _STATE["credentials"].token_for(self.number)
        client = SyncAspClient(self.host or "", token, event_timeout=options.asp_event_timeout)
        RECORDER.count("connections_attempted")
        began = time.perf_counter()
        try:
            session = client.connect()
        except Failure as failure:
            self.refused(failure, time.perf_counter() - began)
            raise StopUser() from None
        except Exception as error:  # the tool's own fault, counted
            self.refused(_unexpected(error), time.perf_counter() - began)
            raise StopUser() from None
        elapsed = time.perf_counter() - began
        RECORDER.count("connections_accepted")
        RECORDER.count("connections_open")
        RECORDER.latency("connect_ms", elapsed)
        _fire(environment, "WS", "connect", elapsed, len(json.dumps(session)))
        self.heartbeat_s = session.get("limits", {}).get("heartbeat_interval_ms", 15000) / 1000
        self.session = session
        self.client = client

    def refused(self, failure: Failure, seconds: float) -> None:
        if failure.code is not None:
            RECORDER.count(f"rejected:{failure.code}")
            _fire(self.environment, "CLOSE", str(failure.code), seconds, exception=failure)
        if self.refusal_expected and failure.code == 1013:
            RECORDER.count("rejected_expected:1013")
            return
        RECORDER.count("connections_failed")
        RECORDER.count(f"error:{failure.kind}")
        _fire(self.environment, "WS", "connect", seconds, exception=failure)

    def disconnect(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
            RECORDER.count("connections_open", -1)

    def on_stop(self) -> None:
        self.disconnect()

    def ping(self) -> None:
        """One application ping; a failure closes the connection and stops the user."""
        if not self.ping_once():
            raise StopUser()

    def ping_once(self) -> bool:
        """One application ping on the open connection, counted as a ping; a failure closes it
        (False)."""
        assert self.client is not None
        began = time.perf_counter()
        try:
            seconds = self.client.ping(f"p{time.monotonic_ns()}")
        except Failure as failure:
            _failed(self.environment, "pings_failed", "ping", failure, time.perf_counter() - began)
            self.disconnect()
            return False
        except Exception as error:
            _failed(self.environment, "pings_failed", "ping", _unexpected(error), time.perf_counter() - began)
            self.disconnect()
            return False
        RECORDER.count("pings_succeeded")
        RECORDER.latency("ping_ms", seconds)
        _fire(self.environment, "WS", "ping", seconds)
        return True


class ThroughputUser(AspUser):
    """A conversation: one message, its whole streamed answer, think time, again.

    A turn that fails in a way that leaves the stream untrustworthy (a stall, a bad frame, an
    event of another run...) closes the connection: a late event of the failed run must never be
    measured as the next run's. The next turn opens a new one.
    """

    pacer: RatePacer | None = None

    def wait_time(self) -> float:
        return 0.0  # the think time is part of the task: see think()

    @task
    def conversation(self) -> None:
        if self.client is None:
            self.open()
            if self.pacer is None and not self.environment.parsed_options.asp_no_pace:
                # The kit's own pacing, under the announced per-user limit (ASP-LIM-004); kept
                # across reconnections: the server counts the user's messages, not a connection's.
                self.pacer = RatePacer(ServerTerms.from_session(self.session).rate_limit, float("inf"))
        if not self.pace():
            return
        if self.client is None:  # lost while held: a new connection for the turn
            self.open()
        self.turn()
        self.think()

    def pace(self) -> bool:
        """Hold the next turn while this user has no room under the rate limit the server announced,
        so the test measures the server, not its limiter; the hold is counted (`turns_paced`,
        `pacing_wait_ms`), never measured. The connection is kept alive meanwhile (an application
        ping every half heartbeat, reading the connection so the server's WebSocket pings are
        answered, ASP-HB-001/004); a ping that fails is counted and closes it. False when the test
        stops meanwhile (no turn then)."""
        if self.pacer is None:
            return True
        room = self.pacer.room(PACED_USER)
        if room is not None and room <= 0:
            began = time.monotonic()
            terms = ServerTerms.from_session(self.session)
            # read the connection well within a heartbeat, so the server's WebSocket pings are
            # answered in time (4005, ASP-HB-001) whatever the phase of its clock
            keepalive_s = min(terms.keepalive_s, (terms.heartbeat_interval_s or terms.keepalive_s) / 2)
            next_ping = began + keepalive_s
            while (self.pacer.room(PACED_USER) or 0) <= 0:
                if self._state == LOCUST_STATE_STOPPING:
                    RECORDER.count("pacing_wait_ms", round((time.monotonic() - began) * 1000))
                    return False
                if self.client is not None and time.monotonic() >= next_ping:
                    self.ping_once()
                    next_ping = time.monotonic() + keepalive_s
                gevent.sleep(0.1)
            RECORDER.count("turns_paced")
            RECORDER.count("pacing_wait_ms", round((time.monotonic() - began) * 1000))
        self.pacer.record(PACED_USER)
        return True

    def think(self) -> None:
        """Think time after each turn, inside the task: Locust kills a user that is in its wait
        at once when the test ends, and a kill that lands as the wait ends would cut the next
        turn short; a user stopping in its task finishes it instead. Cut short when stopping."""
        options = self.environment.parsed_options
        until = time.monotonic() + between(options.asp_think_min, options.asp_think_max)(self)
        while self._state != LOCUST_STATE_STOPPING and time.monotonic() < until:
            gevent.sleep(max(0.0, min(0.1, until - time.monotonic())))

    def turn(self) -> None:
        """One turn on the open connection, counted and measured; Failure never escapes."""
        assert self.client is not None
        environment = self.environment
        began = time.perf_counter()
        try:
            run = self.client.run(environment.parsed_options.asp_prompt)
        except Failure as failure:
            _failed(environment, "turns_failed", "turn", failure, time.perf_counter() - began)
            if failure.breaks_stream:
                self.disconnect()
            return
        except Exception as error:
            _failed(environment, "turns_failed", "turn", _unexpected(error), time.perf_counter() - began)
            self.disconnect()
            return
        except BaseException:  # killed by the end of the test: neither attempted nor measured
            RECORDER.count("turns_interrupted")
            raise
        RECORDER.count("turns_succeeded")
        if run.ttft_s is not None:
            RECORDER.latency("ttft_ms", run.ttft_s)
            _fire(environment, "WS", "ttft", run.ttft_s)
        for gap in run.gaps_s:
            RECORDER.latency("itl_ms", gap)
        if run.tpot_s is not None:
            RECORDER.latency("tpot_ms", run.tpot_s)
        RECORDER.latency("e2e_ms", run.e2e_s)
        RECORDER.count("output_tokens", run.output_tokens)
        RECORDER.count("events", run.events)
        _fire(environment, "WS", "turn", run.e2e_s, run.output_tokens)


class ConnectionsUser(AspUser):
    """Holds its connection and checks it stays healthy with pings; 1013 on connecting is expected."""

    refusal_expected = True

    def wait_time(self) -> float:
        interval = self.environment.parsed_options.asp_ping_interval
        return float(interval or self.heartbeat_s)

    @task
    def keep_alive(self) -> None:
        if self.client is None:
            self.open()
        self.ping()


class SoakUser(ConnectionsUser):
    """Many idle connections pinging at the heartbeat interval; every refusal and drop is an error."""

    refusal_expected = False


class ConnectionsShape(LoadTestShape):
    """Ramp to max_connections + extra users, hold, then stop. Used with ConnectionsUser only."""

    abstract = True

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner else None
        if options is None:
            return None
        target = options.asp_max_connections + options.asp_extra
        rate = max(1.0, float(options.spawn_rate or target))
        ramp = target / rate
        if self.get_run_time() > ramp + options.asp_hold:
            return None
        return target, rate


if os.environ.get("ASP_LOCUST_SHAPE") == "connections":

    class ActiveConnectionsShape(ConnectionsShape):
        abstract = False


def current_summary(environment: Environment) -> dict[str, Any]:
    """The summary of everything measured so far (on the master: merged from every worker)."""
    options = environment.parsed_options
    assert options is not None
    classes = {SCENARIO_OF_CLASS.get(cls.__name__, "") for cls in environment.user_classes}
    scenario = options.asp_scenario or (classes.pop() if len(classes) == 1 else "")
    users = int(options.num_users or 0)
    if environment.shape_class is not None and scenario == "connections":
        users = options.asp_max_connections + options.asp_extra
    began = _CLOCK.get("start", time.monotonic())
    return build_summary(
        RECORDER,
        scenario=scenario,
        users=users,
        duration_s=_CLOCK.get("stop", time.monotonic()) - began,
        expected_rejections=options.asp_extra if scenario == "connections" else 0,
        bounds=_STATE["bounds"],
    )


def _progress(environment: Environment, path: str, interval: float) -> None:
    runner = environment.runner
    assert runner is not None
    requests, then = runner.stats.total.num_requests, time.monotonic()
    while True:
        gevent.sleep(interval)
        now, count = time.monotonic(), runner.stats.total.num_requests
        rps = (count - requests) / max(now - then, 1e-9)
        requests, then = count, now
        _write_progress(path, {"event": "progress", **_snapshot(environment), "rps": round(rps, 2)})


def _snapshot(environment: Environment) -> dict[str, Any]:
    """What a progress line shows; `rps` (Locust requests/s over the last interval) is added by the caller."""
    summary = current_summary(environment)
    runner = environment.runner
    assert runner is not None
    return {
        "elapsed_s": round(time.monotonic() - _CLOCK.get("start", time.monotonic()), 1),
        "users": runner.user_count,
        "connections_open": RECORDER.counters.get("connections_open", 0),
        "turns_succeeded": summary["turns"]["succeeded"],
        "turns_failed": summary["turns"]["failed"],
        "pings": summary["pings"]["attempted"],
        "errors": summary["errors"],
        "ttft_ms": summary["ttft_ms"],
        "itl_ms": summary["itl_ms"],
    }


@events.test_start.add_listener
def _started(environment: Environment, **_: Any) -> None:
    _CLOCK["start"] = time.monotonic()
    _CLOCK.pop("stop", None)
    options = environment.parsed_options
    if options and options.asp_progress_file and not isinstance(environment.runner, WorkerRunner):
        _PROGRESS.append(
            gevent.spawn(_progress, environment, options.asp_progress_file, options.asp_progress_interval)
        )


@events.test_stopping.add_listener
def _stopping(environment: Environment, **_: Any) -> None:
    """On the master: the workers whose final reports the summary waits for, those connected now."""
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        _WORKERS["expected"] = {node.id for node in runner.clients.all if node.state != STATE_MISSING}
        _WORKERS["reported"] = set()


@events.test_stop.add_listener
def _stopped(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        _await_final_reports(runner, environment.stop_timeout + FINAL_GRACE_S)
    elif isinstance(runner, WorkerRunner):
        _send_final_report(runner)
    _CLOCK["stop"] = time.monotonic()


def _send_final_report(runner: WorkerRunner) -> None:
    """On a worker whose users have stopped: everything measured since its last report, Locust's
    statistics and ours, marked final. (What Locust's WorkerRunner sends every 3 s and on quitting.)"""
    data: dict[str, Any] = {}
    runner.environment.events.report_to_master.fire(client_id=runner.client_id, data=data)
    data[FINAL_MARK] = True
    runner.send_message("stats", data)


def _on_final_report_asked(environment: Environment, msg: Any, **_: Any) -> None:
    """On a worker, asked by the master: stop the users (they finish their tasks within
    --stop-timeout; stopping sends the final report, see _stopped), or, stopped already, send it."""
    runner = environment.runner
    assert isinstance(runner, WorkerRunner)
    if runner.state == STATE_STOPPED:
        _send_final_report(runner)
    elif runner.state != STATE_CLEANUP:  # CLEANUP: a stop under way, which will send it
        runner.stop()


def _await_final_reports(runner: MasterRunner, timeout_s: float) -> None:
    """On the master: ask each expected worker whose final report has not come yet for it, and wait
    until every one has come or `timeout_s` has passed. A worker Locust no longer lists is not
    waited for: it said it stopped or quit, after its final report, or it went missing."""

    def pending() -> set[str]:
        listed = {node.id for node in runner.clients.all if node.state != STATE_MISSING}
        return (_WORKERS["expected"] & listed) - _WORKERS["reported"]

    for client_id in pending():
        runner.send_message(FINAL_REPORT, client_id=client_id)
    deadline = time.monotonic() + timeout_s
    while pending():
        if time.monotonic() > deadline:
            logging.getLogger(__name__).warning(
                "no final report within %.0f s from workers %s: the summary lacks what they measured last",
                timeout_s,
                ", ".join(sorted(pending())),
            )
            return
        gevent.sleep(0.05)


@events.reset_stats.add_listener
def _reset(**_: Any) -> None:
    """Drop everything recorded so far, as Locust's own statistics do; open connections stay open."""
    still_open = RECORDER.counters.get("connections_open", 0)
    RECORDER.export()
    RECORDER.count("connections_open", still_open)


@events.report_to_master.add_listener
def _ship(client_id: str, data: dict[str, Any]) -> None:
    data["asp"] = RECORDER.export()


@events.worker_report.add_listener
def _collect(client_id: str, data: dict[str, Any]) -> None:
    if "asp" in data:
        RECORDER.merge(data["asp"])
    if data.get(FINAL_MARK):
        _WORKERS["reported"].add(client_id)


@events.quitting.add_listener
def _summarise(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if not options or isinstance(environment.runner, WorkerRunner):
        return
    while _PROGRESS:
        _PROGRESS.pop().kill(block=False)
    summary = current_summary(environment)
    if options.asp_summary_json:
        with open(options.asp_summary_json, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
    if summary["verdict"]["exit_code"]:
        environment.process_exit_code = summary["verdict"]["exit_code"]
    unauthorized = str(close_code("unauthorized"))
    if not _STATE["credentials"].secrets() and summary["connections"]["rejected_by_code"].get(unauthorized):
        sys.stderr.write(
            f"error: no credentials, and the server refused every user ({unauthorized}): set {SECRET_ENV} "
            f"(mints one user each), {TOKEN_ENV} or --asp-token-file\n"
        )
