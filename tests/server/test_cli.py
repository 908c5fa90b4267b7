"""`asp token` and `asp serve` as a user runs them: the printed token connects."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

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
) -> Iterator[tuple[str, str, str]]:
    """Run a server command; yield (url, dev token, everything it printed up to start-up)."""
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
            lines.append(process.stdout.readline())
        output = "".join(lines)
        url = re.search(r"listening on (ws://\S+)", output)
        token = re.search(r"Development token \(user 'dev', 24 h\): (\S+)", output)
        assert url and token, output
        yield url.group(1), token.group(1), output
    finally:
        process.terminate()
        process.wait(15)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ASP_")}


async def test_asp_serve_on_defaults_prints_a_url_and_a_token_that_connects(tmp_path: Path):
    command = [sys.executable, "-m", "asp_cli.main", "serve", "--port", "0"]
    with announced(command, tmp_path, clean_env(), timeout=30) as (url, token, output):
        assert "generated a secret" in output
        client = await AspClient.open(url, token=token)
        session = await client.expect("session")
        assert session["user"]["id"] == "dev" and "fixtures" in session["capabilities"]
        await client.close()
        assert client.violations == []
        assert (tmp_path / "asp.db").exists()  # the embedded default database


async def test_make_serve_prints_a_token_that_connects(tmp_path: Path):
    """`make serve` exactly as the README gives it (the test run has already bootstrapped .venv)."""
    env = {**clean_env(), "ASP_PORT": "0", "ASP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'make.db'}"}
    with announced(["make", "-s", "serve"], REPO, env, timeout=120) as (url, token, _):
        client = await AspClient.open(url, token=token)
        assert (await client.expect("session"))["user"]["id"] == "dev"
        await client.close()
        assert client.violations == []
