"""`asp load` says what happened: it paces under the announced rate limit, a signal stops every
Locust process and is never a pass, users that would share an ASP user are refused before the
run, a URL's password is never shown, and plain Locust without credentials says so in one line."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.loadtests.asp_load import asp_load, asp_load_command, load_env, plain_locust
from tests.loadtests.servers import running
from tests.loadtests.test_cli import _alive, _children, _command_line
from tests.support.server import SECRET, ServerProcess

QUICK = ["--spawn-rate", "10", "--think-min", "0.05", "--think-max", "0.1"]


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory):
    """The reference server announcing a rate limit of 3 messages per 2 s per user."""
    process = ServerProcess(
        database=tmp_path_factory.mktemp("limited") / "asp.db",
        settings={"ASP_RATE_LIMIT_MESSAGES": "3", "ASP_RATE_LIMIT_WINDOW_MS": "2000"},
    ).start()
    yield process
    process.stop()


def test_each_user_paces_its_turns_under_the_announced_rate_limit(limited_server, tmp_path):
    """Turns of 3 tokens with ~0.1 s of thought send far more than 3 messages per 2 s: unpaced
    (--no-pace, the old behaviour) the limiter refuses some; paced, none, and the hold is reported."""
    args = ["--jwt-secret", SECRET, "--users", "2", "--run-time", "8s", "--prompt", "asp-fixture:text 3"]
    result, summary = asp_load(limited_server.url, tmp_path, *args, *QUICK)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "message_refused:rate_limited" not in summary["errors_by_kind"]
    assert summary["errors"] == 0
    assert summary["turns"]["succeeded"] >= 4  # at least two windows' worth across the users
    assert summary["pacing"]["turns_held"] >= 1 and summary["pacing"]["wait_s"] > 0
    assert "turns held back by the rate limit" in result.stdout

    result, summary = asp_load(limited_server.url, tmp_path, *args, *QUICK, "--no-pace")
    assert result.returncode == 1, result.stdout + result.stderr
    assert summary["errors_by_kind"].get("message_refused:rate_limited", 0) >= 1
    assert summary["pacing"] == {"turns_held": 0, "wait_s": 0}


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.1)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_every_locust_process_and_the_run_is_interrupted_not_passed(tmp_path, sig, code):
    summary_file, stderr_file = tmp_path / "summary.json", tmp_path / "stderr.txt"
    args = ["--users", "2", "--run-time", "60s", "--processes", "2", "--progress-interval", "0.2", *QUICK]
    args += ["--summary-json", str(summary_file)]
    with running("paced") as url, stderr_file.open("w") as stderr:
        process = subprocess.Popen(
            asp_load_command(url, *args),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=tmp_path,
            env=load_env(ASP_LOAD_JWT_SECRET="s"),
        )
        try:
            seen: dict[int, str] = {}

            def measuring() -> bool:
                for pid in _children(process.pid):
                    seen.setdefault(pid, _command_line(pid))
                return re.search(r"turns [1-9][0-9]* ok", stderr_file.read_text()) is not None

            _wait_for(measuring, 90, "a progress line with a successful turn")
            assert len([line for line in seen.values() if "locust" in line]) >= 3  # master + 2 workers
            process.send_signal(sig)
            stdout, _ = process.communicate(timeout=90)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(30)
    assert process.returncode == code, stderr_file.read_text()[-3000:]
    left = [pid for pid, line in seen.items() if _alive(pid) and _command_line(pid) == line]
    assert left == [], [seen[pid] for pid in left]
    err = stderr_file.read_text()
    assert f"asp load: interrupted by {signal.Signals(sig).name}; Locust stopped" in err
    assert "verdict: interrupted" in stdout and "PASS" not in stdout
    verdict = json.loads(summary_file.read_text())["verdict"]
    assert verdict["interrupted"] and not verdict["passed"] and verdict["exit_code"] == code


@pytest.mark.parametrize(
    ("args", "tokens", "complaint"),
    [
        (["--token", "T", "--users", "3"], [], "--users 3 with 1 distinct token"),
        (["--users", "3"], ["a", "b", "b"], "--users 3 with 2 distinct tokens"),
        (
            ["--scenario", "connections", "--max-connections", "1", "--extra", "2"],
            ["a", "b"],
            "3 connections (limit + --extra) with 2 distinct tokens",
        ),
    ],
)
def test_users_sharing_a_token_are_refused_before_the_run(tmp_path, args, tokens, complaint):
    if tokens:
        (tmp_path / "tokens.txt").write_text("\n".join(tokens) + "\n")
        args = [*args, "--token-file", str(tmp_path / "tokens.txt")]
    with running("paced") as url:
        result, _ = asp_load(url, tmp_path, *args, "--run-time", "5s", timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("asp load: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert complaint in result.stderr and "--jwt-secret (mints one user each)" in result.stderr
    assert "4002" in result.stderr


def test_one_token_for_one_user_still_runs(tmp_path):
    with running("paced") as url:
        result, summary = asp_load(url, tmp_path, "--token", "T", "--users", "1", "--run-time", "2s", *QUICK)
    assert result.returncode == 0, result.stderr
    assert summary["turns"]["succeeded"] > 0


def test_a_password_in_the_url_is_never_shown(tmp_path):
    with running("paced") as url:
        secret_url = url.replace("ws://", "ws://someone:hunter2@")
        args = ["--jwt-secret", "s", "--users", "1", "--run-time", "2s"]
        result, summary = asp_load(secret_url, tmp_path, *args)
    assert "hunter2" not in result.stdout + result.stderr
    assert "someone:***@" in result.stderr
    assert summary["turns"]["succeeded"] > 0


def test_plain_locust_without_credentials_says_why_in_one_line(limited_server, tmp_path):
    args = ["ThroughputUser", "--host", limited_server.url, "-u", "1", "-r", "1"]
    result = plain_locust(args, tmp_path, until=lambda progress: progress["errors"] >= 1, env=load_env())
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if "no credentials" in line]
    assert lines == [
        "error: no credentials, and the server refused every user (4001): set ASP_LOAD_JWT_SECRET "
        "(mints one user each), ASP_LOAD_TOKEN or --asp-token-file"
    ], result.stderr[-3000:]
    assert not Path(tmp_path / "summary.json").exists()


def test_a_returning_user_gets_its_history_and_its_next_turn_still_succeeds(limited_server):
    """A user reconnecting to its conversation gets `history` directly after `session`
    (ASP-SES-005); the turn after it used to fail as `unexpected_event`, and so every turn after
    a reconnection in a load test."""
    from loadtests.client import SyncAspClient
    from spec.devtokens import mint

    token = mint(f"returning-{time.monotonic_ns()}", SECRET, ttl_seconds=600)
    for _ in ("first", "returning"):  # the returning one gets its history after session
        client = SyncAspClient(limited_server.url, token)
        client.connect()
        try:
            assert client.run("asp-fixture:text 2").output_tokens == 2
        finally:
            client.close()
