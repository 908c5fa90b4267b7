"""`asp load` as a command: options checked before Locust starts, and no secret on any command
line or in any output."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from tests.loadtests.asp_load import asp_load_command, load_env
from tests.loadtests.servers import running


def _children(root: int) -> list[int]:
    """Every live descendant of process `root` (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], list(parents.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += parents.get(pid, [])
    return found


def _command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _run_watching_children(
    command: list[str], env: dict[str, str], cwd: Path
) -> tuple[int, str, dict[int, str]]:
    """Run `command` to its end; its exit code, all its output, and the command line of every
    descendant seen while it ran."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    seen: dict[int, str] = {}
    deadline = time.monotonic() + 120
    output = b""
    try:
        while process.poll() is None and time.monotonic() < deadline:
            own = _command_line(process.pid)
            for pid in _children(process.pid):
                line = _command_line(pid)
                # A child caught between fork and exec still shows its parent's command line (the
                # one the test gave asp load); what counts is the program it runs.
                if line and line != own and line not in seen.get(pid, ""):
                    seen[pid] = f"{seen.get(pid, '')}\n{line}".strip()
            time.sleep(0.05)
    finally:
        output, _ = process.communicate(timeout=60)
    return process.returncode, output.decode(errors="replace"), seen


@pytest.mark.parametrize("given", ["environment", "flag"])
def test_no_secret_on_any_child_command_line_or_in_any_output(tmp_path, given):
    secret = f"argv-secret-{secrets.token_hex(8)}"
    files = {"summary": tmp_path / "summary.json", "html": tmp_path / "report.html"}
    args = ["--users", "2", "--spawn-rate", "10", "--run-time", "3s", "--processes", "2", "--verbose"]
    args += ["--think-min", "0.1", "--think-max", "0.2", "--summary-json", str(files["summary"])]
    args += ["--html", str(files["html"]), "--csv", str(tmp_path / "locust")]
    env = load_env(ASP_LOAD_JWT_SECRET=secret) if given == "environment" else load_env()
    with running("paced") as url:
        command = asp_load_command(url, *args, *(["--jwt-secret", secret] if given == "flag" else []))
        code, output, children = _run_watching_children(command, env, tmp_path)
    assert code == 0, output[-3000:]
    assert any("locust" in line for line in children.values()), children  # Locust and its workers seen
    assert len([line for line in children.values() if "locust" in line]) >= 3  # master + 2 workers
    for pid, line in children.items():
        assert secret not in line, f"secret on the command line of {pid}"
    assert secret not in output
    written = [*files.values(), *tmp_path.glob("locust*.csv")]
    assert all(path.exists() and secret not in path.read_text() for path in written)
    assert json.loads(files["summary"].read_text())["turns"]["succeeded"] > 0


def test_a_token_never_reaches_a_command_line_or_the_output_even_when_a_library_logs_it(tmp_path):
    """A server that selects no subprotocol makes websocket-client log the subprotocols it offered,
    the token among them; a token in the URL's query is moved off Locust's command line."""
    token = f"opaque-token-{secrets.token_hex(8)}"
    with running("no_subprotocol") as url:
        command = asp_load_command(f"{url}?token={token}", "--users", "1", "--run-time", "2s", "--verbose")
        code, output, children = _run_watching_children(command, load_env(), tmp_path)
    assert code == 1  # the handshake failed: nothing measured
    assert "connect_failed" in output
    assert "[redacted]" in output  # websocket-client did log the offered subprotocols
    assert token not in output
    assert all(token not in line for line in children.values())


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--slo", "ttft=5"], "--slo: unknown name 'ttft'"),
        (["--slo", "ttft_p99_ms"], "expected NAME=VALUE"),
        (["--run-time", "10s", "--timeout", "5"], "--timeout 5 s is shorter than the run"),
        (["--run-time", "ten"], "--run-time 'ten'"),
        (["--users", "0"], "--users must be at least 1"),
        (["--users", "many"], "argument --users: invalid int value"),
        (["--token-file", "/nonexistent/tokens.txt"], "--token-file /nonexistent/tokens.txt"),
        (["--jwt-secret", ""], "no credentials: give --jwt-secret, --token or --token-file"),
        # a report that cannot be written is said before the run, not as a traceback after it
        (["--summary-json", "/nonexistent/s.json"], "cannot write --summary-json /nonexistent/s.json"),
        (["--html", "."], "cannot write --html .: is a directory"),
        (["--csv", "/nonexistent/run"], "cannot write --csv /nonexistent/run_stats.csv: its directory"),
    ],
)
def test_an_option_that_cannot_work_is_one_line_and_exit_2_before_locust_starts(tmp_path, args, complaint):
    secret = f"usage-secret-{secrets.token_hex(8)}"
    result = subprocess.run(
        asp_load_command("ws://127.0.0.1:9/ws/chat", "--jwt-secret", secret, *args),
        capture_output=True,
        text=True,
        timeout=60,
        env=load_env(),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("asp load: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert complaint in result.stderr
    assert secret not in result.stderr


def test_no_credentials_at_all_is_one_line_and_exit_2_before_locust_starts(tmp_path):
    result = subprocess.run(
        asp_load_command("ws://127.0.0.1:9/ws/chat", "--run-time", "30s"),
        capture_output=True,
        text=True,
        timeout=60,
        env=load_env(),
        cwd=tmp_path,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "asp load: error: no credentials: give --jwt-secret, --token or --token-file "
        "(or ASP_LOAD_JWT_SECRET / ASP_LOAD_TOKEN)\n"
    )


def _alive(pid: int) -> bool:
    """Whether `pid` is a live process (not gone, not a zombie)."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_no_locust_process_outlives_asp_load_with_the_web_ui_and_workers(tmp_path):
    """`--web-port 0 --processes 2`: Locust's workers used to outlive their master, re-parented to
    PID 1; every process asp load started is gone when it exits."""
    # 5 s: its exit 0 needs a measured turn, and two worker processes start slowly on a loaded host
    args = ["--users", "2", "--spawn-rate", "10", "--run-time", "5s", "--processes", "2", "--web-port", "0"]
    args += ["--think-min", "0.1", "--think-max", "0.2", "--quiet"]
    with running("paced") as url:
        command = asp_load_command(url, *args)
        code, output, children = _run_watching_children(command, load_env(ASP_LOAD_JWT_SECRET="s"), tmp_path)
    assert code == 0, output[-3000:]
    assert len([line for line in children.values() if "locust" in line]) >= 3  # master + 2 workers seen
    left = [pid for pid, line in children.items() if _alive(pid) and _command_line(pid) == line]
    assert left == [], [children[pid] for pid in left]
