"""Locust users for ASP. `locust -f loadtests/locustfile.py --host ws://HOST:PORT/ws/chat ...`.

Scenarios are user classes: ConnectionsUser (with ConnectionsShape ramping past the limit),
ThroughputUser (conversations with think time), SoakUser (idle connections that ping). Every
request reaches Locust's statistics through its request event: `connect`, `ttft`, `turn`, `ping`,
and each close code under its own name (request type CLOSE). Exact percentiles are kept apart
(loadtests.metrics) and merged from workers on the master; --asp-summary-json writes them.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from typing import Any

from locust import LoadTestShape, User, between, events, task
from locust.env import Environment
from locust.exception import StopUser

from loadtests.client import Closed, SyncAspClient
from loadtests.metrics import Recorder
from loadtests.summary import build_summary

RECORDER = Recorder()
_user_numbers = itertools.count()
_STARTED: dict[str, float] = {}


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument(
        "--asp-token", default="", help="bearer token for every user", include_in_web_ui=False
    )
    parser.add_argument("--asp-token-file", default="", help="tokens, one per line, one per user")
    parser.add_argument(
        "--asp-jwt-secret", default="", help="mint a token per user (HS256)", include_in_web_ui=False
    )
    parser.add_argument("--asp-prompt", default="asp-fixture:slow 50 20", help="message each turn sends")
    parser.add_argument("--asp-think-min", type=float, default=0.5, help="think time between turns, min s")
    parser.add_argument("--asp-think-max", type=float, default=1.5, help="think time between turns, max s")
    parser.add_argument("--asp-max-connections", type=int, default=0, help="connections scenario: the limit")
    parser.add_argument("--asp-extra", type=int, default=5, help="connections scenario: attempts beyond it")
    parser.add_argument(
        "--asp-hold", type=float, default=10.0, help="connections scenario: seconds at the top"
    )
    parser.add_argument("--asp-ping-interval", type=float, default=0.0, help="s between pings (0: heartbeat)")
    parser.add_argument("--asp-summary-json", default="", help="write the exact summary here at the end")
    parser.add_argument("--asp-scenario", default="", help="scenario name recorded in the summary")
    parser.add_argument("--asp-user-prefix", default="load", help="user names when minting")


def _token(environment: Environment, number: int) -> str:
    options = environment.parsed_options
    assert options is not None
    if options.asp_jwt_secret:
        from reference_server.auth import mint

        worker = os.getpid()
        return mint(f"{options.asp_user_prefix}-{worker}-{number}", options.asp_jwt_secret, ttl_seconds=3600)
    if options.asp_token_file:
        with open(options.asp_token_file, encoding="utf-8") as handle:
            tokens = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
        return tokens[number % len(tokens)]
    return str(options.asp_token)


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


class AspUser(User):
    """Opens one authenticated connection per user; a refusal is reported by its close code."""

    abstract = True
    client: SyncAspClient | None = None

    def on_start(self) -> None:
        environment = self.environment
        number = next(_user_numbers)
        self.client = SyncAspClient(self.host or "", _token(environment, number))
        RECORDER.count("connections_attempted")
        began = time.perf_counter()
        try:
            session = self.client.connect()
        except Closed as closed:
            RECORDER.count(f"rejected:{closed.code}")
            _fire(environment, "CLOSE", str(closed.code), time.perf_counter() - began, exception=closed)
            _fire(environment, "WS", "connect", time.perf_counter() - began, exception=closed)
            self.client = None
            raise StopUser() from None
        except Exception as failure:
            RECORDER.count("rejected:error")
            _fire(environment, "WS", "connect", time.perf_counter() - began, exception=failure)
            self.client = None
            raise StopUser() from None
        elapsed = time.perf_counter() - began
        RECORDER.count("connections_accepted")
        RECORDER.latency("connect_ms", elapsed)
        _fire(environment, "WS", "connect", elapsed, len(json.dumps(session)))
        self.heartbeat_s = session.get("limits", {}).get("heartbeat_interval_ms", 15000) / 1000

    def on_stop(self) -> None:
        if self.client is not None:
            self.client.close()

    def dropped(self, closed: Closed) -> None:
        RECORDER.count("errors")
        RECORDER.count(f"dropped:{closed.code}")
        _fire(self.environment, "CLOSE", str(closed.code), 0.0, exception=closed)
        self.client = None
        raise StopUser()

    def ping(self) -> None:
        assert self.client is not None
        try:
            seconds = self.client.ping(f"p{time.monotonic_ns()}")
        except Closed as closed:
            self.dropped(closed)
        RECORDER.latency("ping_ms", seconds)
        _fire(self.environment, "WS", "ping", seconds)


class ThroughputUser(AspUser):
    """A conversation: one message, its whole streamed answer, think time, again."""

    def wait_time(self) -> float:
        options = self.environment.parsed_options
        return float(between(options.asp_think_min, options.asp_think_max)(self))

    @task
    def turn(self) -> None:
        assert self.client is not None
        try:
            run = self.client.run(self.environment.parsed_options.asp_prompt)
        except Closed as closed:
            self.dropped(closed)
        except RuntimeError as refused:
            RECORDER.count("errors")
            _fire(self.environment, "WS", "turn", 0.0, exception=refused)
            return
        if run.ttft_s is not None:
            RECORDER.latency("ttft_ms", run.ttft_s)
            _fire(self.environment, "WS", "ttft", run.ttft_s)
        for gap in run.gaps_s:
            RECORDER.latency("itl_ms", gap)
        if run.tpot_s is not None:
            RECORDER.latency("tpot_ms", run.tpot_s)
        RECORDER.latency("e2e_ms", run.e2e_s)
        RECORDER.count("turns")
        RECORDER.count("output_tokens", run.output_tokens)
        RECORDER.count("events", run.events)
        failed = None if run.finish_reason == "stop" else RuntimeError(f"finish_reason {run.finish_reason}")
        if failed:
            RECORDER.count("errors")
        _fire(self.environment, "WS", "turn", run.e2e_s, run.output_tokens, exception=failed)


class ConnectionsUser(AspUser):
    """Holds its connection and checks it stays healthy with pings."""

    def wait_time(self) -> float:
        interval = self.environment.parsed_options.asp_ping_interval
        return float(interval or getattr(self, "heartbeat_s", 1.0))

    @task
    def keep_alive(self) -> None:
        self.ping()


class SoakUser(ConnectionsUser):
    """Many idle connections pinging at the heartbeat interval; every unexpected drop is counted."""


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


@events.test_start.add_listener
def _started(environment: Environment, **_: Any) -> None:
    _STARTED["t"] = time.monotonic()


@events.report_to_master.add_listener
def _ship(client_id: str, data: dict[str, Any]) -> None:
    data["asp"] = RECORDER.export()


@events.worker_report.add_listener
def _collect(client_id: str, data: dict[str, Any]) -> None:
    if "asp" in data:
        RECORDER.merge(data["asp"])


@events.quitting.add_listener
def _summarise(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if not options or not options.asp_summary_json:
        return
    from locust.runners import WorkerRunner

    if isinstance(environment.runner, WorkerRunner):
        return
    duration = time.monotonic() - _STARTED.get("t", time.monotonic())
    users = int(options.num_users or 0)
    if os.environ.get("ASP_LOCUST_SHAPE") == "connections":
        users = options.asp_max_connections + options.asp_extra
    summary = build_summary(RECORDER, scenario=options.asp_scenario, users=users, duration_s=duration)
    with open(options.asp_summary_json, "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
