"""`asp token` and `asp serve` as a user runs them: the printed token connects."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.wire import AspClient
from reference_server.auth import verify
from tests.support.server import SECRET

REPO = Path(__file__).resolve().parents[2]


def test_asp_token_prints_only_a_token_for_the_configured_secret():
    env = {**os.environ, "ASP_JWT_SECRET": SECRET}
    result = subprocess.run(
        [sys.executable, "-m", "asp_cli.main", "token", "--user", "carol", "--ttl", "60"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = result.stdout.strip()
    assert "\n" not in token and verify(token, SECRET) == "carol"


def test_asp_token_refuses_without_a_secret():
    env = {k: v for k, v in os.environ.items() if k != "ASP_JWT_SECRET"}
    result = subprocess.run(
        [sys.executable, "-m", "asp_cli.main", "token", "--user", "carol"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2


@contextlib.contextmanager
def announced(
    command: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> Iterator[tuple[str, str]]:
    """Run a server command; yield (url, everything it printed up to start-up)."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not any("startup complete" in line for line in lines):
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            lines.append(line)
        output = "".join(lines)
        url = re.search(r"listening on (ws://\S+)", output)
        assert url, output
        yield url.group(1), output
    finally:
        process.terminate()
        process.wait(15)


DEV_TOKEN = re.compile(r"Development token \(user 'dev', 60 min\): (\S+)")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ASP_")}


async def test_asp_serve_dev_prints_a_loud_banner_and_a_short_lived_token_that_connects(tmp_path: Path):
    command = [sys.executable, "-m", "asp_cli.main", "serve", "--dev", "--port", "0"]
    with announced(command, tmp_path, clean_env(), timeout=30) as (url, output):
        assert "generated a secret" in output and "DEVELOPMENT MODE" in output
        token = DEV_TOKEN.search(output)
        assert token, output
        client = await AspClient.open(url, token=token.group(1))
        session = await client.expect("session")
        assert session["user"]["id"] == "dev" and "fixtures" in session["capabilities"]
        await client.close()
        assert client.violations == []
        assert (tmp_path / "asp.db").exists()  # the embedded default database


@pytest.mark.parametrize(
    "command",
    [["-m", "asp_cli.main", "serve", "--port", "0"], ["-m", "reference_server"]],
    ids=["asp serve", "python -m reference_server"],
)
def test_defect_6_without_dev_no_token_is_printed(tmp_path: Path, command: list[str]):
    env = {**clean_env(), "ASP_PORT": "0", "ASP_JWT_SECRET": SECRET, "ASP_DEV_LOGIN": "true"}
    with announced([sys.executable, *command], tmp_path, env, timeout=30) as (_, output):
        assert "Development token" not in output and "DEVELOPMENT MODE" not in output
        assert not re.search(r"eyJ[A-Za-z0-9_-]+\.", output)
        assert "asp token --user" in output


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
def test_dev_mode_is_refused_on_a_non_loopback_address(tmp_path: Path, host: str):
    result = subprocess.run(
        [sys.executable, "-m", "asp_cli.main", "serve", "--dev", "--host", host, "--port", "0"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "loopback" in result.stderr
    assert "eyJ" not in result.stdout


async def test_make_serve_is_dev_mode_and_prints_a_token_that_connects(tmp_path: Path):
    """`make serve` exactly as the README gives it (the test run has already bootstrapped .venv)."""
    env = {**clean_env(), "ASP_PORT": "0", "ASP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'make.db'}"}
    with announced(["make", "-s", "serve"], REPO, env, timeout=120) as (url, output):
        token = DEV_TOKEN.search(output)
        assert token, output
        client = await AspClient.open(url, token=token.group(1))
        assert (await client.expect("session"))["user"]["id"] == "dev"
        await client.close()
        assert client.violations == []


# --- `asp serve`: messages, not tracebacks (issue 15) ------------------------------------------------


def asp_serve(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`asp serve ARGS` that is expected to refuse to start."""
    return subprocess.run(
        [sys.executable, "-m", "asp_cli.main", "serve", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line_refusal(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a start that failed with exit 2, no traceback anywhere."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.mark.parametrize(
    ("command", "stop"),
    [
        (["-m", "asp_cli.main", "serve", "--port", "0"], signal.SIGINT),
        (["-m", "reference_server"], signal.SIGTERM),
    ],
    ids=["asp serve, Ctrl-C", "python -m reference_server, SIGTERM"],
)
def test_a_stop_signal_shuts_down_with_one_line_and_exit_0(
    tmp_path: Path, command: list[str], stop: signal.Signals
):
    env = {**clean_env(), "ASP_PORT": "0", "ASP_JWT_SECRET": SECRET}
    process = subprocess.Popen(
        [sys.executable, *command],
        cwd=tmp_path,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "startup complete" in line:
            break
    process.send_signal(stop)
    out, _ = process.communicate(timeout=60)
    everything = "".join(seen) + out
    assert process.returncode == 0, everything
    assert "Traceback" not in everything and "KeyboardInterrupt" not in everything
    assert out.strip().splitlines()[-1] == f"ASP reference server stopped ({stop.name}).", everything
    # SQLite's -wal and -shm files go with the last connection: a clean stop leaves only the database
    assert sorted(p.name for p in tmp_path.iterdir()) == ["asp.db"]


def test_a_port_in_use_is_one_line_naming_the_way_out(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_refusal(asp_serve("--port", str(port), env=clean_env(), cwd=tmp_path))
    assert f"127.0.0.1:{port}" in line and "in use" in line and "--port" in line and "ASP_PORT" in line


def test_a_model_of_a_missing_provider_names_the_extra(tmp_path: Path):
    pytest.importorskip("pydantic_ai")
    if importlib.util.find_spec("openai") is not None:
        pytest.skip("the providers extra is installed here")
    env = {**clean_env(), "ASP_MODEL": "openai:gpt-4o"}
    line = one_line_refusal(asp_serve("--port", "0", env=env, cwd=tmp_path))
    assert "pip install 'agent-stream-protocol[providers]'" in line


def test_settings_are_validated_once_with_a_line_each_and_no_secret_echoed(tmp_path: Path):
    short = "too-short-a-secret"
    env = {**clean_env(), "ASP_JWT_SECRET": short, "ASP_MAX_CONNECTIONS": "0"}
    result = asp_serve("--port", "0", env=env, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("error: ASP_JWT_SECRET (--jwt-secret): is 18 bytes; HS256 needs at least 32")
    assert lines[1].startswith("error: ASP_MAX_CONNECTIONS (--max-connections): ")
    assert short not in result.stderr
    token = subprocess.run(
        [sys.executable, "-m", "asp_cli.main", "token", "--user", "carol"],
        env={**clean_env(), "ASP_JWT_SECRET": short},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "ASP_JWT_SECRET" in one_line_refusal(token) and "Warning" not in token.stderr
