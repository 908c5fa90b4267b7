"""`asp token` and `asp serve` as a user runs them: the printed token connects."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import create_async_engine

from conformance.wire import AspClient
from reference_server.auth import mint, verify
from reference_server.config import Settings, without_settings
from reference_server.server import event_loop_name
from tests.support.server import SECRET
from tests.support.services import fresh_database

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


def test_asp_token_reads_only_the_secret_of_the_settings():
    env = {**clean_env(), "ASP_JWT_SECRET": SECRET, "ASP_DATABASE_URL": "sqlite:///x.db", "ASP_PORT": "-1"}
    command = [sys.executable, "-m", "asp_cli.main", "token", "--user", "carol"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert verify(result.stdout.strip(), SECRET) == "carol" and result.stderr == ""


def test_asp_token_refuses_without_a_secret():
    env = {k: v for k, v in os.environ.items() if k != "ASP_JWT_SECRET"}
    result = subprocess.run(
        [sys.executable, "-m", "asp_cli.main", "token", "--user", "carol"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert one_line_refusal(result).startswith("asp token: error: set ASP_JWT_SECRET")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["--user", "carol", "--ttl", "-5"],
            "argument --ttl: must be a whole number of seconds above 0, got '-5'",
        ),
        (
            ["--user", "carol", "--ttl", "0"],
            "argument --ttl: must be a whole number of seconds above 0, got '0'",
        ),
        (["--user", ""], "argument --user: must name a user, got an empty name"),
        (["--user", "  "], "argument --user: must name a user, got an empty name"),
    ],
    ids=["expired", "zero", "empty user", "blank user"],
)
def test_asp_token_refuses_an_expired_token_and_an_empty_user(args: list[str], said: str):
    result = subprocess.run(
        [sys.executable, "-m", "asp_cli.main", "token", *args],
        env={**os.environ, "ASP_JWT_SECRET": SECRET},
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = one_line_refusal(result)
    assert line.startswith(f"asp token: error: {said}") and "(see asp token --help)" in line, line
    assert result.stdout == ""


@dataclass
class Started:
    url: str
    output: str  # everything printed up to start-up
    after_stop: str = ""  # what it printed after Ctrl-C
    pid: int = 0  # the command's process


@contextlib.contextmanager
def announced(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> Iterator[Started]:
    """Run a server command in its own process group; stop it as a terminal's Ctrl-C does (SIGINT to
    the whole group: `make` and the server it runs)."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
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
        started = Started(url.group(1), output, pid=process.pid)
        yield started
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            rest, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            rest, _ = process.communicate(timeout=10)
    started.after_stop = rest


DEV_TOKEN = re.compile(r"Development token \(user 'dev', 60 min\): (\S+)")


def clean_env() -> dict[str, str]:
    return without_settings(os.environ)


async def test_asp_serve_dev_prints_a_loud_banner_and_a_short_lived_token_that_connects(tmp_path: Path):
    command = [sys.executable, "-m", "asp_cli.main", "serve", "--dev", "--port", "0"]
    with announced(command, tmp_path, clean_env(), timeout=30) as started:
        url, output = started.url, started.output
        assert "generated a secret" in output and "DEVELOPMENT MODE" in output
        token = DEV_TOKEN.search(output)
        assert token, output
        client = await AspClient.open(url, token=token.group(1))
        session = await client.expect("session")
        assert session["user"]["id"] == "dev" and "fixtures" in session["capabilities"]
        await client.close()
        assert client.violations == []
        assert (tmp_path / "asp.db").exists()  # the embedded default database


@pytest.mark.parametrize("variable", ["asp_fixtures", "ASP_FIXTURES"])
async def test_asp_serve_yields_its_fixtures_default_to_the_variable_in_any_case(
    tmp_path: Path, variable: str
):
    """`asp serve` turns fixtures on unless a variable sets them; pydantic-settings reads the
    variable's name in any case, so a lower-case `asp_fixtures=false` must turn them off as the
    upper-case one does (it was overridden by the command's own default). Session capabilities
    on a real WebSocket show what the server runs with."""
    env = {**clean_env(), "ASP_JWT_SECRET": SECRET, variable: "false"}
    command = [sys.executable, "-m", "asp_cli.main", "serve", "--port", "0"]
    with announced(command, tmp_path, env, timeout=30) as started:
        client = await AspClient.open(started.url, token=mint("case", SECRET, ttl_seconds=60))
        capabilities = (await client.expect("session"))["capabilities"]
        await client.close()
        assert "fixtures" not in capabilities, f"{variable}=false was not respected: {capabilities}"


@pytest.mark.parametrize(
    "command",
    [["-m", "asp_cli.main", "serve", "--port", "0"], ["-m", "reference_server"]],
    ids=["asp serve", "python -m reference_server"],
)
def test_defect_6_without_dev_no_token_is_printed(tmp_path: Path, command: list[str]):
    env = {**clean_env(), "ASP_PORT": "0", "ASP_JWT_SECRET": SECRET, "ASP_DEV_LOGIN": "true"}
    with announced([sys.executable, *command], tmp_path, env, timeout=30) as started:
        output = started.output
        assert "Development token" not in output and "DEVELOPMENT MODE" not in output
        assert not re.search(r"eyJ[A-Za-z0-9_-]+\.", output)
        assert "asp token --user" in output
        assert 'Check it: ASP_CHECK_JWT_SECRET="$ASP_JWT_SECRET" asp check ws://127.0.0.1:' in output
        assert "--jwt-algorithms HS256" in output
        assert SECRET not in output  # a secret the user set is never echoed


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
    """`make serve` exactly as the README gives it (the test run has already bootstrapped .venv):
    it prints the URL, the demo page and an `asp check` line that runs as printed."""
    env = {**clean_env(), "ASP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'make.db'}"}
    with announced(["make", "serve", "PORT=0"], REPO, env, timeout=120) as started:
        url, output = started.url, started.output
        token = DEV_TOKEN.search(output)
        assert token, output
        client = await AspClient.open(url, token=token.group(1))
        assert (await client.expect("session"))["user"]["id"] == "dev"
        await client.close()
        assert client.violations == []
        assert f"Demo page: {url.replace('ws://', 'http://').removesuffix('/ws/chat')}/" in output
        check = re.search(r"^Check it: (.+)$", output, re.MULTILINE)
        assert check, output
        words = shlex.split(check.group(1))
        assert words[0].startswith("ASP_CHECK_JWT_SECRET=") and len(words[0]) > 40  # out of argv
        # .venv/bin is not on PATH; the kit is told the server's one algorithm (ASP-AUTH-012) and a
        # --max-wait over the 60 s idle timeout (the idle cases are proven, not left untestable)
        assert words[1:] == [
            ".venv/bin/asp",
            "check",
            url,
            "--jwt-algorithms",
            "HS256",
            "--max-wait",
            "75",
        ], words
        report = tmp_path / "report.json"
        selection = ["--cases", "session.user_is_the_subject", "--quiet", "--json-file", str(report)]
        result = await asyncio.to_thread(
            subprocess.run,
            ["sh", "-c", f"{check.group(1)} {shlex.join(selection)}"],  # the line as a shell runs it
            cwd=REPO,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(report.read_text())["summary"]["pass"] == 1
    # Ctrl-C in the terminal of `make serve`: one line, no traceback, nothing from make
    assert started.after_stop.strip().splitlines()[-1] == "ASP reference server stopped (SIGINT).", started
    assert "Traceback" not in started.after_stop and "make:" not in started.after_stop


SERVING_WITHOUT_EXTRAS = """
import importlib.machinery, json, sys
blocked = set(json.load(open(sys.argv[1])))

class WithoutExtras(importlib.machinery.PathFinder):
    # a module whose file an extra's distribution installed is not there
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.origin in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (not installed without extras)", name=name)
        return spec

sys.meta_path.insert(0, WithoutExtras)
from asp_cli.main import build_parser
build_parser().parse_args(["serve", "--dev"])
from reference_server.app import create_app
from reference_server.config import Settings
from reference_server.server import serve
create_app(Settings(fixtures=True), dev_token_ttl_s=60)
print("served without extras")
"""


def base_distributions() -> set[str]:
    """The distributions `pip install agent-stream-protocol` brings, extras left out (what `make serve`
    installs), followed through their own requirements."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: set[str] = set()
    todo = [("agent-stream-protocol", "")]
    while todo:
        name, extra = todo.pop()
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
                continue
            key = canonicalize_name(requirement.name)
            for wanted in ["", *requirement.extras]:
                if (key, wanted) not in found and _installed(key):
                    found.add((key, wanted))  # type: ignore[arg-type]
                    todo.append((key, wanted))
    return {name for name, _ in found}  # type: ignore[misc]


def _installed(name: str) -> bool:
    from importlib import metadata

    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_serving_needs_no_extra(tmp_path: Path):
    """`make serve` installs the package without the dev extra: `asp serve --dev` builds its app with
    every module of a distribution only an extra brings (pytest, mypy, Playwright, OpenTelemetry's
    SDK...) made unimportable, as in an install without extras (optional imports may fail)."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    allowed = base_distributions() | {"agent-stream-protocol", "setuptools"}  # setuptools: its .pth hook
    blocked = sorted(
        str(distribution.locate_file(file).resolve())
        for distribution in metadata.distributions()
        if canonicalize_name(distribution.metadata["Name"]) not in allowed
        for file in distribution.files or []
        if file.suffix in (".py", ".so")
    )
    assert any("/playwright/" in path for path in blocked) and any("/mypy/" in path for path in blocked)
    (tmp_path / "blocked.json").write_text(json.dumps(blocked))
    result = subprocess.run(
        [sys.executable, "-c", SERVING_WITHOUT_EXTRAS, str(tmp_path / "blocked.json")],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "served without extras" in result.stdout, result.stderr[-3000:]
    assert "pip install --quiet -e .\n" in (REPO / "Makefile").read_text()


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
        env = {**clean_env(), "ASP_JWT_SECRET": SECRET}
        line = one_line_refusal(asp_serve("--port", str(port), env=env, cwd=tmp_path))
    assert f"127.0.0.1:{port}" in line and "in use" in line and "--port" in line and "ASP_PORT" in line


def test_a_model_of_a_missing_provider_names_the_extra(tmp_path: Path):
    pytest.importorskip("pydantic_ai")
    if importlib.util.find_spec("openai") is not None:
        pytest.skip("the providers extra is installed here")
    env = {**clean_env(), "ASP_MODEL": "openai:gpt-4o", "ASP_JWT_SECRET": SECRET}
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
        env=env,  # the secret's problem only: the connection limit is the server's
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = one_line_refusal(token)
    assert line.startswith("asp token: error: ASP_JWT_SECRET: is 18 bytes; HS256 needs at least 32"), line
    assert "Warning" not in token.stderr and short not in token.stderr


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        (
            "ASP_PATH",
            "ws/chat",
            "error: ASP_PATH (--path): must start with /, such as /ws/chat, got 'ws/chat'",
        ),
        (
            "ASP_EVENT_LOOP",
            "epoll",
            "error: ASP_EVENT_LOOP (--event-loop): Input should be 'auto', 'asyncio' or 'uvloop', "
            "got 'epoll'",
        ),
        (
            "ASP_TRACING",
            "yes please",
            "error: ASP_TRACING (--tracing): takes true or console (false, or unset, leaves it off), "
            "got 'yes please'",
        ),
    ],
)
def test_a_path_or_tracing_mode_that_cannot_work_is_one_line_before_listening(
    tmp_path: Path, variable: str, value: str, said: str
) -> None:
    """A path without its `/` served nothing and was announced as ws://HOST:PORTws/chat; a tracing
    word other than true/console turned tracing on."""
    result = asp_serve(
        "--port", "0", env={**clean_env(), "ASP_JWT_SECRET": SECRET, variable: value}, cwd=tmp_path
    )
    assert one_line_refusal(result) == said + "\n"
    assert "listening" not in result.stdout


def test_a_coalescing_window_over_a_tenth_of_the_idle_timeout_is_one_line_before_listening(
    tmp_path: Path,
) -> None:
    """ASP-HB-002. A run's last events wait up to coalesce_ms after its end, from which the idle
    timeout counts: 15 s of coalescing under a 2 s idle timeout closed a connection 4003 after its
    first delta, the rest of the run and its `complete` never delivered."""
    env = {**clean_env(), "ASP_JWT_SECRET": SECRET, "ASP_COALESCE_MS": "15000", "ASP_IDLE_TIMEOUT_MS": "2000"}
    result = asp_serve("--port", "0", env=env, cwd=tmp_path)
    assert one_line_refusal(result) == (
        "error: ASP_COALESCE_MS (--coalesce-ms): is 15000, more than a tenth of idle_timeout_ms (2000): "
        "a run's last events would wait that long after its end, from which the idle timeout counts\n"
    )
    assert Settings(coalesce_ms=200, idle_timeout_ms=2000).coalesce_ms == 200


def test_uvloop_asked_for_by_name_must_be_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """`auto` takes asyncio's loop without uvloop; `uvloop` named without it installed is refused with
    the way out, before start-up (uvicorn failed on its import once the server had begun)."""
    real_find_spec = importlib.util.find_spec

    def without_uvloop(name: str, package: str | None = None) -> object:
        return None if name == "uvloop" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", without_uvloop)
    with pytest.raises(ValidationError, match="uvloop is not installed: pip install uvloop"):
        Settings(event_loop="uvloop")
    assert Settings(event_loop="auto").event_loop == "auto"
    assert event_loop_name("asyncio") == "asyncio"


async def test_a_server_on_asyncios_own_loop_streams_an_answer(tmp_path: Path) -> None:
    """`--event-loop asyncio` reaches uvicorn: the server starts on it and streams a run to its end."""
    env = {**clean_env(), "ASP_JWT_SECRET": SECRET}
    command = [sys.executable, "-m", "asp_cli.main", "serve", "--port", "0", "--event-loop", "asyncio"]
    with announced(command, tmp_path, env, timeout=30) as started:
        with open(f"/proc/{started.pid}/maps") as mapped:  # noqa: ASYNC230 (procfs: never blocks)
            maps = mapped.read()
        client = await AspClient.open(started.url, token=mint("loop", SECRET, ttl_seconds=60))
        await client.expect("session")
        await client.send({"type": "message", "content": "asp-fixture:text 3"})
        complete = await client.expect("complete")
        await client.close()
    assert complete["finish_reason"] == "stop" and client.violations == []
    assert "uvloop" not in maps  # asyncio's own loop, even where uvloop is installed


def test_tracing_off_spelled_false_is_off() -> None:
    """`ASP_TRACING=False` (or 0, off, no) leaves tracing off; it used to turn it on."""
    from reference_server.config import Settings

    for off in ("False", "0", "off", "no", ""):
        assert Settings(tracing=off).tracing == ""
    assert Settings(tracing="TRUE").tracing == "true"


# --- ASP_DATABASE_URL: checked in the settings, opened before listening -------------------------------


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("nonsense", "is not a database URL; use one such as sqlite+aiosqlite:///"),
        ("sqlite:///x.db", "names the driver pysqlite, which is not async; use sqlite+aiosqlite:///x.db"),
        ("nosuchdb://h/x", "names no database SQLAlchemy knows"),
        (
            "mysql+aiomysql://u:hunter2-secret@h/x",
            "needs the driver aiomysql, which is not installed: pip install",
        ),
        (
            "postgresql://u@h/x",
            "needs the driver psycopg, which is not installed: pip install psycopg, "
            "or use postgresql+asyncpg://",
        ),
        (
            "sqlite+aiosqlite:////nonexistent_dir/x.db",
            "cannot open sqlite+aiosqlite:////nonexistent_dir/x.db:",
        ),
        # asyncpg installed: the refused connection; not installed: the package to install
        ("postgresql+asyncpg://u:hunter2-secret@127.0.0.1:1/x", "postgresql+asyncpg://u:***@127.0.0.1:1/x"),
    ],
    ids=[
        "not a URL",
        "sync driver",
        "unknown database",
        "driver missing",
        "another driver",
        "cannot open",
        "password",
    ],
)
def test_a_database_url_that_cannot_serve_is_one_line_before_listening(tmp_path: Path, url: str, said: str):
    missing = re.search(r"needs the driver (\w+), which is not installed", said)
    if missing and importlib.util.find_spec(missing.group(1)) is not None:
        pytest.skip(f"{missing.group(1)} is installed here")
    result = asp_serve("--port", "0", "--dev", "--database-url", url, env=clean_env(), cwd=tmp_path)
    line = one_line_refusal(result)
    assert line.startswith("error: ASP_DATABASE_URL (--database-url): ") and said in line, line
    assert "listening" not in result.stdout and "hunter2" not in result.stdout + result.stderr


def test_a_file_that_is_no_database_is_one_line_before_listening(tmp_path: Path):
    (tmp_path / "notes.db").write_text("these are notes, not a database\n")
    url = f"sqlite+aiosqlite:///{tmp_path / 'notes.db'}"
    result = asp_serve("--port", "0", "--dev", "--database-url", url, env=clean_env(), cwd=tmp_path)
    line = one_line_refusal(result)
    refused = "error: ASP_DATABASE_URL (--database-url): cannot open"
    assert line == f"{refused} {url}: file is not a database\n", line
    assert "listening" not in result.stdout


def test_a_migration_that_fails_is_one_line_before_listening(tmp_path: Path):
    with fresh_database() as url:
        # a table of the layout's name that is not the layout's: the first migration cannot create it
        asyncio.run(_execute(url, "CREATE TABLE asp_conversations (something_else integer)"))
        result = asp_serve("--port", "0", "--dev", "--database-url", url, env=clean_env(), cwd=tmp_path)
    line = one_line_refusal(result)
    refused = "error: ASP_DATABASE_URL (--database-url): cannot open postgresql+asyncpg://"
    assert line.startswith(refused), line
    assert "asp_conversations" in line and "listening" not in result.stdout


async def _execute(url: str, sql: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql(sql)
    finally:
        await engine.dispose()


def test_the_production_entry_checks_the_database_url_too(tmp_path: Path):
    env = {**clean_env(), "ASP_DATABASE_URL": "sqlite:///x.db", "ASP_JWT_SECRET": SECRET}
    result = subprocess.run(
        [sys.executable, "-m", "reference_server"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "ASP_DATABASE_URL (--database-url): sqlite:///x.db names the driver pysqlite" in one_line_refusal(
        result
    )


@pytest.mark.parametrize(
    "command",
    [["-m", "asp_cli.main", "serve", "--port", "0"], ["-m", "reference_server"]],
    ids=["asp serve", "python -m reference_server"],
)
def test_without_dev_a_server_without_asp_jwt_secret_refuses_to_start(tmp_path: Path, command: list[str]):
    """A secret generated per start is printed only in development mode: elsewhere nobody could
    mint a token for it, so the server says what to set instead of listening to no purpose."""
    env = {**clean_env(), "ASP_PORT": "0"}
    result = subprocess.run(
        [sys.executable, *command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    line = one_line_refusal(result)
    assert line.startswith("error: ASP_JWT_SECRET is not set"), line
    assert "asp token --user NAME" in line and "asp serve --dev" in line
    assert "listening" not in result.stdout and not (tmp_path / "asp.db").exists()


# --- a mistyped flag: named by its command, with the closest flag; no prefix abbreviations ------------


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["check", "ws://127.0.0.1:1/ws/chat", "--jwt-secert", "x"],
            "asp check: error: unrecognized arguments: --jwt-secert x; did you mean --jwt-secret?",
        ),
        (  # a prefix is no longer taken for the flag it abbreviates
            ["check", "ws://127.0.0.1:1/ws/chat", "--json-fil", "r.json"],
            "asp check: error: unrecognized arguments: --json-fil r.json; did you mean --json-file?",
        ),
        (
            ["serve", "--databse-url=x"],
            "asp serve: error: unrecognized arguments: --databse-url=x; did you mean --database-url?",
        ),
        (["spec", "valdate", "-"], "asp spec: error: argument spec_command: invalid choice: 'valdate'"),
    ],
    ids=["check", "abbreviation", "serve", "spec"],
)
def test_a_mistyped_flag_is_named_by_its_command_with_the_closest_flag(
    tmp_path: Path, args: list[str], said: str
):
    result = subprocess.run(
        [sys.executable, "-m", "asp_cli.main", *args],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = one_line_refusal(result)
    assert line.startswith(said), line
    assert line.rstrip().endswith(f"(see {said.split(':')[0]} --help)"), line
    assert list(tmp_path.iterdir()) == []  # nothing ran


def test_no_asp_command_takes_a_prefix_of_a_flag():
    from asp_cli.main import build_parser

    pending = [build_parser()]
    seen = 0
    while pending:
        parser = pending.pop()
        seen += 1
        assert parser.allow_abbrev is False, parser.prog
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())
    assert seen >= 8  # asp, spec, spec validate, spec site, serve, token, check, check-client, ...


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("nonsense", "is not a Redis URL (Redis URL must specify one of the following schemes"),
        ("redis://:hunter2-secret@127.0.0.1:1/0", "cannot reach redis://:***@127.0.0.1:1/0: "),
    ],
    ids=["not a URL", "unreachable"],
)
def test_a_redis_url_that_cannot_serve_is_one_line_before_listening(tmp_path: Path, url: str, said: str):
    env = {**clean_env(), "ASP_REDIS_URL": url}
    result = asp_serve("--port", "0", "--dev", env=env, cwd=tmp_path)
    line = one_line_refusal(result)
    assert line.startswith(f"error: ASP_REDIS_URL (--redis-url): {said}"), line
    assert "listening" not in result.stdout and "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize("workers", ["0", "-3", "two"])
def test_workers_below_one_are_a_usage_error_not_one_process(tmp_path: Path, workers: str) -> None:
    """`--workers 0` served as one process (and a negative count too): a count that serves nothing
    is refused like any bad flag, before anything opens."""
    env = {**clean_env(), "ASP_JWT_SECRET": SECRET, "ASP_REDIS_URL": "redis://127.0.0.1:1/0"}
    line = one_line_refusal(asp_serve("--port", "0", "--workers", workers, env=env, cwd=tmp_path))
    said = "asp serve: error: argument --workers: must be a whole number of processes, at least 1"
    assert line.startswith(said), line
    assert repr(workers) in line
