"""`asp load URL` and `asp bench`: Locust headless with ASP users, progress, a final table, a verdict.

`asp load` validates every option before Locust starts (a usage error exits 2 with one line),
passes secrets to Locust through the environment (never its command line), prints progress while
it runs and the summary as tables at the end, and exits with the verdict of loadtests.summary.judge:
0 pass, 1 failed (nothing measured, or errors no --slo error_rate allows), 3 an SLO missed,
2 usage errors or Locust itself failing; SIGINT (Ctrl-C) or SIGTERM stop Locust and every process
it started, and the run ends "interrupted" with 130 or 143 (128 + the signal), never a pass.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from loadtests.credentials import SECRET_ENV, TOKEN_ENV, Credentials, read_token_file, redact
from reference_server.stores import shown_url

if TYPE_CHECKING:
    from loadtests.bench.processes import DidNotStart

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
SCENARIOS = {"connections": "ConnectionsUser", "throughput": "ThroughputUser", "soak": "SoakUser"}
EXIT_USAGE = 2
EXIT_SLO = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C ended
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a command `kill` ended
STOP_GRACE_S = 2.0  # beyond --event-timeout, so a turn stalled at the end is judged, not cut short
_DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")


class UsageError(ValueError):
    """An option that cannot work; the message is one line."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: the run stops as Ctrl-C stops it; `exit_code` is 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


def _catch_stop_signals() -> dict[int, Any]:
    """SIGINT and SIGTERM raise Interrupted from now on (a CI timeout's SIGTERM as Ctrl-C); returns
    the previous handlers."""
    return {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}


def _hold_stop_signals() -> dict[int, Any]:
    """SIGINT and SIGTERM ignored (while the children are being ended); returns the previous handlers."""
    return {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}


@dataclass
class Plan:
    """What `asp load` runs, every option checked. Secrets are kept apart from the command."""

    url: str
    run_time_s: int
    jwt_secret: str
    token: str
    bounds: dict[str, float]
    stop_timeout_s: float
    token_file: str = ""
    max_connections: int | None = None  # connections scenario: the flag, else the server's announcement
    limit_source: str = "--max-connections"

    def secrets(self) -> list[str]:
        return [value for value in (self.jwt_secret, self.token) if value]

    def distinct_users(self) -> int | None:
        """How many distinct ASP users the credentials give (None: one minted per simulated user)."""
        if self.jwt_secret:
            return None
        if self.token_file:
            return len(set(read_token_file(self.token_file)))
        return 1

    def check_distinct(self, users: int, what: str) -> None:
        """Raises UsageError when `users` simulated users would share an ASP user: the server closes
        a user's older connection when a newer one opens (superseded), so such a run cannot pass."""
        from spec.registry import close_code

        distinct = self.distinct_users()
        if distinct is not None and users > distinct:
            given = f"{distinct} distinct token{'s' if distinct != 1 else ''}"
            raise UsageError(
                f"{what} with {given}: users sharing a token supersede each other's connections "
                f"({close_code('superseded')}); give --jwt-secret (mints one user each) or a --token-file "
                "with a token per user"
            )

    def credentials(self) -> Credentials:
        """The users' credentials (the probe's user is named apart from Locust's)."""
        tokens = read_token_file(self.token_file) if self.token_file else []
        return Credentials(self.jwt_secret, self.token, tokens, user_prefix="load-probe")


def parse_duration(text: str) -> int:
    """Locust's time spans: `30`, `30s`, `2m`, `1h30m` -> seconds. Raises UsageError."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    match = _DURATION.match(text)
    if not text or not match:
        raise UsageError(f"--run-time {text!r}: expected a time span such as 30s, 2m, 1h30m")
    return int(match["h"] or 0) * 3600 + int(match["m"] or 0) * 60 + int(match["s"] or 0)


def plan_load(args: argparse.Namespace) -> Plan:
    """Every option checked, before anything starts. Raises UsageError (one line)."""
    from conformance.report.outputs import unwritable
    from loadtests.summary import SloError, parse_slo

    parts = urlsplit(args.url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise UsageError(f"{shown_url(args.url)!r} is not a ws:// or wss:// URL")
    query = parse_qsl(parts.query, keep_blank_values=True)
    url_token = next((value for key, value in query if key == "token"), "")
    url = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "token"])))
    checks = [
        (args.users >= 1, "--users must be at least 1"),
        (args.spawn_rate > 0, "--spawn-rate must be positive"),
        (args.event_timeout > 0, "--event-timeout must be positive"),
        (0 <= args.think_min <= args.think_max, "--think-min and --think-max: 0 <= min <= max"),
        (args.extra >= 0 and args.hold >= 0, "--extra and --hold must not be negative"),
        (args.max_connections is None or args.max_connections >= 1, "--max-connections must be at least 1"),
        (args.ping_interval is None or args.ping_interval > 0, "--ping-interval must be positive"),
        (args.processes is None or args.processes >= 1, "--processes must be at least 1"),
        (args.progress_interval > 0, "--progress-interval must be positive"),
        (args.web_port is None or 0 <= args.web_port <= 65535, "--web-port must be 0 to 65535"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    outputs = [("--summary-json", args.summary_json), ("--html", args.html)]
    outputs.append(("--locust-json", args.locust_json))
    if args.csv:  # a prefix: Locust writes PREFIX_stats.csv and others beside it
        outputs.append(("--csv", f"{args.csv}_stats.csv"))
    for flag, target in outputs:
        why = unwritable(Path(target)) if target else None
        if why:
            raise UsageError(f"cannot write {flag} {target}: {why}")
    run_time_s = parse_duration(args.run_time)
    if run_time_s < 1:
        raise UsageError("--run-time must be at least 1 s")
    stop_timeout_s = args.event_timeout + STOP_GRACE_S
    if args.timeout < run_time_s + stop_timeout_s:
        raise UsageError(
            f"--timeout {args.timeout:g} s is shorter than the run: --run-time {run_time_s} s plus "
            f"{stop_timeout_s:g} s for the last turns (--event-timeout + {STOP_GRACE_S:g})"
        )
    try:
        bounds = parse_slo(args.slo or "")
    except SloError as bad:
        raise UsageError(str(bad)) from None
    if args.token_file:
        try:
            if not read_token_file(args.token_file):
                raise UsageError(f"--token-file {args.token_file}: no token in it")
        except OSError as unreadable:
            raise UsageError(f"--token-file {args.token_file}: {unreadable.strerror}") from None
    plan = Plan(
        url=url,
        run_time_s=run_time_s,
        jwt_secret=args.jwt_secret or os.environ.get(SECRET_ENV, ""),
        token=args.token or url_token or os.environ.get(TOKEN_ENV, ""),
        bounds=bounds,
        stop_timeout_s=stop_timeout_s,
        token_file=args.token_file or "",
        max_connections=args.max_connections,
    )
    if not (plan.jwt_secret or plan.token or plan.token_file):
        raise UsageError(
            f"no credentials: give --jwt-secret, --token or --token-file (or {SECRET_ENV} / {TOKEN_ENV})"
        )
    if args.scenario != "connections":  # its connections are counted once the limit is known
        plan.check_distinct(args.users, f"--users {args.users}")
    return plan


class CredentialsRefused(UsageError):
    """The probe connection was closed 4001 before `session`: every user would be refused."""


def probe(plan: Plan, connect_timeout: float = 10.0) -> list[str]:
    """One connection before Locust starts, as `asp check` makes: it learns the server's announced
    `session.limits.max_connections` (into `plan.max_connections` unless --max-connections gave
    one) and returns hints for the operator (an upgrade refused with HTTP 403/404: a wrong path?).

    Raises CredentialsRefused when the server closes it 4001 (ASP-AUTH-003). Any other failure
    (nothing listening, a refused upgrade) is left to the run, which counts it per user.
    """
    from loadtests.client import Failure, SyncAspClient
    from spec.registry import close_code

    unauthorized = close_code("unauthorized")
    client = SyncAspClient(plan.url, plan.credentials().token_for(0), connect_timeout=connect_timeout)
    try:
        session = client.connect()
    except Failure as failure:
        if failure.code == unauthorized:
            # Name the variable too: the README's quick start gives the secret in the environment.
            given = (
                "--jwt-secret (or ASP_LOAD_JWT_SECRET)"
                if plan.jwt_secret
                else "--token / --token-file (or ASP_LOAD_TOKEN)"
            )
            raise CredentialsRefused(
                f"the server refused the credentials ({unauthorized}): check {given}"
            ) from None
        return [hint] if (hint := path_hint(failure.code, plan.url)) else []
    finally:
        client.close()
    announced = session.get("limits", {}).get("max_connections")
    if plan.max_connections is None and isinstance(announced, int) and announced >= 1:
        plan.max_connections, plan.limit_source = announced, "announced by the server"
    return []


def path_hint(code: int | str | None, url: str) -> str:
    """A hint for an upgrade refused with HTTP 403 or 404 (`http_403`), the answer of many servers
    (the reference server among them) to a path they do not serve; "" for any other refusal."""
    if code not in ("http_403", "http_404"):
        return ""
    path = urlsplit(url).path or "/"
    return f"the upgrade was refused with HTTP {str(code)[5:]}: is the path right? ({path})"


def locust_command(
    args: argparse.Namespace, plan: Plan, summary: Path, progress: Path
) -> tuple[list[str], dict[str, str]]:
    """Locust's command line (no secret in it) and its environment (the secrets, by name)."""
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        SCENARIOS[args.scenario],
        "--host",
        plan.url,
        "-u",
        str(args.users),
        "-r",
        str(args.spawn_rate),
        "-t",
        f"{plan.run_time_s}s",
        "--stop-timeout",
        f"{plan.stop_timeout_s:g}",
        "--exit-code-on-error",
        "0",
        "--only-summary",
        "--asp-summary-json",
        str(summary),
        "--asp-progress-file",
        str(progress),
        "--asp-progress-interval",
        f"{args.progress_interval:g}",
        "--asp-scenario",
        args.scenario,
        "--asp-event-timeout",
        f"{args.event_timeout:g}",
        "--asp-think-min",
        f"{args.think_min:g}",
        "--asp-think-max",
        f"{args.think_max:g}",
    ]
    if args.no_pace:
        command.append("--asp-no-pace")
    if args.web_port is None:
        command.append("--headless")
    else:
        command += [
            "--autostart",
            "--autoquit",
            "0",
            "--web-host",
            "127.0.0.1",
            "--web-port",
            str(args.web_port),
        ]
    for flag, value in [
        ("--asp-token-file", args.token_file),
        ("--asp-prompt", args.prompt),
        ("--asp-slo", ",".join(f"{name}={bound:g}" for name, bound in plan.bounds.items())),
        ("--csv", args.csv),
        ("--html", args.html),
        ("--json-file", args.locust_json.removesuffix(".json") if args.locust_json else None),
    ]:
        if value:
            command += [flag, value]
    if args.scenario == "connections":
        command += [
            "--asp-max-connections",
            str(plan.max_connections or args.users),
            "--asp-extra",
            str(args.extra),
            "--asp-hold",
            str(args.hold),
        ]
    if args.ping_interval:
        command += ["--asp-ping-interval", str(args.ping_interval)]
    if args.processes:
        # Locust's master binds every interface on port 5557 by default: two runs on one machine
        # would share it (and each other's workers). Loopback and a port of its own instead.
        port = str(_free_port())
        command += ["--processes", str(args.processes), "--master-bind-host", "127.0.0.1"]
        command += ["--master-bind-port", port, "--master-host", "127.0.0.1", "--master-port", port]
    env = {k: v for k, v in os.environ.items() if k not in (SECRET_ENV, TOKEN_ENV, "ASP_LOCUST_SHAPE")}
    if plan.jwt_secret:
        env[SECRET_ENV] = plan.jwt_secret
    if plan.token:
        env[TOKEN_ENV] = plan.token
    if args.scenario == "connections":
        env["ASP_LOCUST_SHAPE"] = "connections"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(LOCUSTFILE.parents[1]), env.get("PYTHONPATH")]))
    return command, env


def _free_port() -> int:
    """A loopback port free now (the kernel's pick for port 0); Locust binds it a moment later."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _Tail:
    """New complete lines of a file another process appends to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def lines(self) -> list[str]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        return complete.decode("utf-8", errors="replace").splitlines()


def end_group(leader: subprocess.Popen[str], grace_s: float = 5.0) -> None:
    """End every process left in the process group `leader` (Locust) heads, its own session:
    `--processes` workers outlive a master that quits, re-parented to PID 1. SIGTERM, then SIGKILL
    after `grace_s` seconds; returns when the group is empty (at most 2 x `grace_s`)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + grace_s
        try:
            os.killpg(leader.pid, sig)
            while time.monotonic() < deadline:
                time.sleep(0.05)
                leader.poll()  # reaps the leader, so its zombie does not keep the group alive
                os.killpg(leader.pid, 0)  # ProcessLookupError once no process is left in the group
        except ProcessLookupError:
            return


def run_load(
    args: argparse.Namespace, plan: Plan, show: Any = print
) -> tuple[int, dict[str, Any] | None, list[str]]:
    """Run Locust to the end; `show(record)` gets each progress record (dicts, see locustfile).

    Interrupted (SIGINT, or SIGTERM once _catch_stop_signals is in place) stops Locust as Ctrl-C
    does: it writes its summary of what ran, judged "interrupted" with 128 + the signal; a second
    signal stops waiting for it. Every process Locust started has ended when this returns.

    Returns (exit code, summary or None, messages). The summary carries its own verdict.
    """
    from loadtests.summary import interrupt

    with tempfile.TemporaryDirectory() as scratch:
        summary_path, progress_path = Path(scratch) / "summary.json", Path(scratch) / "progress.jsonl"
        command, env = locust_command(args, plan, summary_path, progress_path)
        output = None if args.verbose else (Path(scratch) / "locust.log").open("w+", encoding="utf-8")
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=output, text=True, start_new_session=True
        )
        tail = _Tail(progress_path)
        deadline = time.monotonic() + args.timeout
        timed_out = False
        stopped: Interrupted | None = None
        try:
            while process.poll() is None:
                if time.monotonic() > deadline:
                    timed_out = True
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)
                    break
                for line in tail.lines():
                    show(json.loads(line))
                time.sleep(0.2)
        except KeyboardInterrupt as stop:  # stop the test early; Locust still writes its summary
            stopped = stop if isinstance(stop, Interrupted) else Interrupted(signal.SIGINT)
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(plan.stop_timeout_s + 30)
            except (KeyboardInterrupt, subprocess.TimeoutExpired):  # a second signal: no more waiting
                pass
        finally:
            previous = _hold_stop_signals()
            try:
                end_group(process)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        for line in tail.lines():
            show(json.loads(line))
        log = ""
        if output is not None:
            output.seek(0)
            log = redact(output.read()[-2000:], plan.secrets())
            output.close()
        if timed_out:
            return (
                EXIT_USAGE,
                None,
                [f"Locust did not finish within --timeout {args.timeout:g} s and was killed"],
            )
        if stopped is not None:
            if not summary_path.exists():
                return stopped.exit_code, None, []
            summary: dict[str, Any] = json.loads(summary_path.read_text(encoding="utf-8"))
            interrupt(summary, stopped.name, stopped.exit_code, plan.run_time_s)
            return stopped.exit_code, summary, []
        if not summary_path.exists():
            return EXIT_USAGE, None, [f"Locust exited {process.returncode} without a summary. {log}".strip()]
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    return int(summary["verdict"]["exit_code"]), summary, []


def _load(args: argparse.Namespace) -> int:
    previous = _catch_stop_signals()
    try:
        return _load_caught(args)
    except Interrupted as stopped:  # before Locust started, or while its summary was being shown
        print(f"asp load: interrupted by {stopped.name}", file=sys.stderr)
        return stopped.exit_code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _load_caught(args: argparse.Namespace) -> int:
    from rich.console import Console

    from loadtests.report import final_tables, progress_line

    try:
        plan = plan_load(args)
        hints = probe(plan)
        if args.scenario == "connections":
            total = (plan.max_connections or args.users) + args.extra
            plan.check_distinct(total, f"{total} connections (limit + --extra)")
    except CredentialsRefused as refused:
        print(f"asp load: {refused}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as bad:
        print(f"asp load: error: {bad}", file=sys.stderr)
        return EXIT_USAGE
    # soft_wrap: a line is never broken mid-phrase when the output is a pipe or a file
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    out = Console(highlight=False, soft_wrap=True)

    def show(record: dict[str, Any]) -> None:
        if record["event"] == "web_ui":
            err.print(f"web UI: {record['url']}", markup=False)
        elif record["event"] == "progress" and not args.quiet:
            err.print(progress_line(record), markup=False)

    for hint in hints:
        err.print(f"asp load: {hint}", markup=False)
    if not args.quiet:
        target = shown_url(plan.url)
        err.print(f"asp load: {args.scenario} against {target}: {header(args, plan)}", markup=False)
    code, summary, messages = run_load(args, plan, show)
    for message in messages:
        err.print(f"error: {message}", markup=False)
    if summary is None and code > 128:
        err.print(f"asp load: interrupted by {signal.Signals(code - 128).name}; Locust stopped", markup=False)
    elif summary is not None and summary["verdict"].get("interrupted"):
        err.print(f"asp load: interrupted by {summary['verdict']['signal']}; Locust stopped", markup=False)
    if summary is None:
        return code
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    out.print(final_tables(summary))
    if summary["connections"]["accepted"] == 0:
        for kind in summary["errors_by_kind"]:
            hint = path_hint(kind.removeprefix("refused:"), plan.url)
            if hint and hint not in hints:
                out.print(f"hint: {hint}", markup=False)
    return code


def header(args: argparse.Namespace, plan: Plan) -> str:
    """What the run will open, as the header line says it: users at the spawn rate for the run
    time; in the connections scenario the connections it opens, limit plus --extra."""
    if args.scenario != "connections":
        return f"{args.users} users at {args.spawn_rate:g}/s for {plan.run_time_s} s"
    if plan.max_connections is None:
        limit = f"limit {args.users} (--users: the server announces none; give --max-connections)"
    else:
        limit = f"limit {plan.max_connections} ({plan.limit_source})"
    total = (plan.max_connections or args.users) + args.extra
    return (
        f"{total} connections, {limit} + --extra {args.extra}, at {args.spawn_rate:g}/s, "
        f"held {args.hold:g} s (at most {plan.run_time_s} s)"
    )


def bench_exit_code(results: dict[str, Any]) -> int:
    """0 when every target of `asp bench` is met, EXIT_SLO (3) when one is missed or not determined
    (the run only bounds its figure, on the wrong side to prove it: not a pass)."""
    return EXIT_SLO if any(not target["met"] for target in results["targets"].values()) else 0


def targets_summary(judged: dict[str, Any]) -> str:
    """The closing line of `asp bench`: the judged targets (results["targets"]) counted by verdict,
    and the exit code they give (`bench_exit_code`): "3 of 10 targets not met (1 missed, 2 not
    determined): exit 3", or "10 of 10 targets met: exit 0"."""
    code = bench_exit_code({"targets": judged})
    total = len(judged)
    noun = "target" if total == 1 else "targets"
    unmet = [target["verdict"] for target in judged.values() if not target["met"]]
    if not unmet:
        return f"{total} of {total} {noun} met: exit {code}" if total else f"no target judged: exit {code}"
    counts = ", ".join(f"{unmet.count(v)} {v}" for v in ("missed", "not determined") if v in unmet)
    return f"{len(unmet)} of {total} {noun} not met ({counts}): exit {code}"


def target_line(name: str, target: dict[str, Any]) -> str:
    """The line `asp bench` prints for one judged target (an entry of results["targets"]): its
    verdict, the figure as the table shows it (`shown_figure`, with its bound), the target, and why
    when the figure is bounded."""
    from loadtests.bench.table import bounded, shown_figure

    verdict = "met" if target["met"] else target["verdict"].upper()
    shown = "null" if target["value"] is None else shown_figure(target["value"])  # nothing to divide by
    value = bounded(shown, target.get("bound", "exact"))
    why = f": {target['why']}" if "why" in target else ""
    return f"target {verdict}: {name} = {value} (target {target['target']}){why}"


def did_not_start(failed: DidNotStart) -> tuple[str, int]:
    """What `asp bench` says, one line, and its exit code when a server it measures did not start:
    EXIT_USAGE when the server refused the user's settings (it exited EXIT_USAGE, its one-line reason,
    with --redis-url or --database-url among its settings: they failed after the bench checked them);
    otherwise 1, the bench's own fault (its servers run on its settings alone, none inherited) or this
    machine's (a server that says nothing within its time), said as such."""
    if failed.users_settings and failed.exit_code == EXIT_USAGE:
        return f"asp bench: {failed} (check {failed.users_settings})", EXIT_USAGE
    return f"asp bench: {failed}; a fault of the bench, not of your configuration", 1


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def _positive(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _at_least_3(text: str) -> int:
    value = _whole(text)
    if value < 3:
        raise argparse.ArgumentTypeError("must be at least 3: a median with a spread needs three")
    return value


def _bench(args: argparse.Namespace) -> int:
    from conformance.report.outputs import unwritable
    from loadtests.bench.run import BenchPlan, Terminated, bench

    if args.database_url and not args.redis_url:
        print("asp bench: --database-url is the scale-out section's: give --redis-url too", file=sys.stderr)
        return 2
    why = unwritable(Path(args.json)) if args.json else None
    if why:  # said now: a full run takes many minutes, and its results would be lost to a traceback
        print(f"asp bench: cannot write --json {args.json}: {why}", file=sys.stderr)
        return 2
    plan = BenchPlan.quick() if args.quick else BenchPlan()
    if args.connections is not None:
        plan.connections = args.connections
    if args.repeats is not None:
        plan.repeats = args.repeats
    if args.processes is not None:
        plan.processes = args.processes
    if args.redis_url:
        from loadtests.bench.scale import problem

        unusable = problem(args.redis_url, args.database_url or "")
        if unusable:
            print(f"asp bench: {unusable}", file=sys.stderr)
            return 2
    from loadtests.bench.measure import ServerSilent
    from loadtests.bench.processes import DidNotStart

    try:
        results = bench(
            plan,
            progress=lambda text: print(text, file=sys.stderr, flush=True),
            redis_url=args.redis_url or "",
            database_url=args.database_url or "",
        )
    except ServerSilent as silent:  # a server under measurement hung: nothing to report, not a pass
        print(f"asp bench: a server under measurement stopped answering: {silent}", file=sys.stderr)
        return 1
    except DidNotStart as failed:  # one line, never a traceback; the run's other servers are stopped
        line, code = did_not_start(failed)
        print(line, file=sys.stderr)
        return code
    except KeyboardInterrupt:  # Ctrl-C: the run's servers and generator processes are stopped by now
        print("asp bench: interrupted; no results", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:  # SIGTERM (a CI timeout): the same, stopped as on Ctrl-C
        print("asp bench: terminated; no results", file=sys.stderr)
        return EXIT_TERMINATED
    text = json.dumps(results, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    print(text)
    from loadtests.bench.table import table

    print(table(results), file=sys.stderr)
    for name, target in results["targets"].items():
        print(target_line(name, target), file=sys.stderr)
    print(targets_summary(results["targets"]), file=sys.stderr)
    return bench_exit_code(results)


def register(commands: Any) -> None:
    bench_parser = commands.add_parser(
        "bench",
        help="measure the reference server against the floors of its stack",
        description="Measures, in one run on this machine, each figure at least 3 times: the transport floor "
        "(bare uvicorn/WebSocket), the framework floors (pydantic-ai in process; served by the bare stack "
        "for time to first token), and the reference server "
        "(one stream, TTFT, a sweep of concurrent 50 tokens/s streams, N idle connections with application "
        "pings and their memory), as ratios against the floors, with the load generator's CPU and the load "
        "average beside each. With --redis-url, a scale-out section too: the server with its state in Redis "
        "against the embedded one (stream, CPU per 1,000 tokens, memory) and `asp serve --workers 2` on "
        "Redis against one embedded process (sweep). A figure the run can only bound (a sweep that passed "
        "its top level, a generator-bound figure) is shown as one, and a target it cannot prove is NOT "
        "DETERMINED. Exit 0 when every target is met, 3 when one is missed or not determined, 2 on a usage "
        "error (a flag that is no number, a --json path that cannot be written) or when --redis-url or "
        "--database-url cannot be used, 1 when a server under measurement did not start for a reason of "
        "the bench's own, 130 on Ctrl-C and 143 on SIGTERM (no results). The servers run on the bench's "
        "settings alone: ASP_ variables of this shell do not reach them.",
    )
    bench_parser.add_argument("--json", help="write the results here")
    bench_parser.add_argument(
        "--quick",
        action="store_true",
        help="a small run (about a minute), a smoke test: it shows every measurement runs; on its "
        "default 30 connections memory_ratio is NOT DETERMINED, so it exits 3",
    )
    bench_parser.add_argument(
        "--connections",
        type=_positive,
        help="connection-scale figure: idle authenticated connections held (default 1000; --quick 30)",
    )
    bench_parser.add_argument(
        "--repeats", type=_at_least_3, help="times each figure is measured (default 3, at least 3)"
    )
    bench_parser.add_argument(
        "--processes", type=_positive, help="load-generator worker processes (default 4; --quick 2)"
    )
    bench_parser.add_argument(
        "--redis-url",
        help="add the scale-out section: the server with its state in this Redis (under a fresh key "
        "prefix, deleted after), and `asp serve --workers 2` on it, against the embedded server",
    )
    bench_parser.add_argument(
        "--database-url",
        help="with --redis-url: PostgreSQL for the scale-out servers' history; the bench creates a fresh "
        "database beside the one named and drops it after (default: a SQLite file per server)",
    )
    bench_parser.set_defaults(handler=_bench)

    load = commands.add_parser(
        "load",
        help="load-test an ASP server with Locust",
        description="Run a Locust scenario headless against URL, show progress, print the exact summary and "
        "its verdict. Exit 0 pass; 1 nothing measured, or errors no --slo error_rate allows; 3 an --slo "
        "missed; 2 a usage error or Locust failing. Plain `locust -f loadtests/locustfile.py` works too.",
    )
    load.add_argument("url", help="ws:// or wss:// URL of the ASP endpoint")
    load.add_argument("--scenario", choices=sorted(SCENARIOS), default="throughput")
    load.add_argument("--users", type=int, default=10)
    load.add_argument("--spawn-rate", type=float, default=10)
    load.add_argument("--run-time", default="30s", help="Locust duration, e.g. 30s, 2m")
    load.add_argument("--token", help=f"one token, for one user: --users 1 (or {TOKEN_ENV}, kept out of ps)")
    load.add_argument("--token-file", help="tokens, one per line, one per user")
    load.add_argument("--jwt-secret", help=f"mint a token per user (or {SECRET_ENV}, kept out of ps)")
    load.add_argument(
        "--no-pace",
        action="store_true",
        help="do not hold each user's turns under the rate limit the server announces (to load its limiter)",
    )
    load.add_argument("--prompt", help="message of each turn (default: a 50-token stream at 50 tokens/s)")
    load.add_argument("--think-min", type=float, default=0.5, help="think time between turns, min seconds")
    load.add_argument("--think-max", type=float, default=1.5, help="think time between turns, max seconds")
    load.add_argument(
        "--event-timeout",
        type=float,
        default=30.0,
        help="longest silence within a turn or a ping before it counts as stalled, seconds",
    )
    load.add_argument("--max-connections", type=int, help="connections scenario: the server's limit")
    load.add_argument("--extra", type=int, default=5, help="connections scenario: attempts beyond the limit")
    load.add_argument("--hold", type=float, default=5.0, help="connections scenario: seconds at the top")
    load.add_argument("--ping-interval", type=float, help="connections/soak: seconds between pings")
    load.add_argument("--processes", type=int, help="Locust worker processes (distributed on this machine)")
    load.add_argument("--summary-json", help="write the summary, with its verdict, here")
    load.add_argument(
        "--slo", help="e.g. ttft_p99_ms=500,itl_p99_ms=100,error_rate=0.01,tokens_per_s_min=100"
    )
    load.add_argument("--csv", help="Locust CSV prefix")
    load.add_argument("--html", help="Locust HTML report")
    load.add_argument("--locust-json", help="Locust's own JSON stats file")
    load.add_argument("--web-port", type=int, help="also serve Locust's web UI on 127.0.0.1:PORT (0: any)")
    load.add_argument("--progress-interval", type=float, default=2.0, help="seconds between progress lines")
    load.add_argument("--timeout", type=float, default=3600, help="kill Locust after this many seconds")
    load.add_argument("--quiet", action="store_true", help="no progress lines")
    load.add_argument("--verbose", action="store_true", help="show Locust's output")
    load.set_defaults(handler=_load)
