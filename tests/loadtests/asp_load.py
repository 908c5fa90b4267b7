"""Run `asp load` as an operator does: a subprocess, its exit code, its output, its summary file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reference_server.config import without_settings

REPO = Path(__file__).resolve().parents[2]
LATENCIES = ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms")
LOCUSTFILE = REPO / "loadtests" / "locustfile.py"


def load_env(**extra: str) -> dict[str, str]:
    """This environment without any ASP_ variable (a stray secret must not decide a test), plus `extra`."""
    env = without_settings(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def asp_load_command(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "asp_cli.main", "load", url, *args]


def asp_load(
    url: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run `asp load URL ARGS --summary-json FILE` to its end; the result and the summary ({} if none)."""
    summary = tmp_path / "summary.json"
    summary.unlink(missing_ok=True)
    result = subprocess.run(
        asp_load_command(url, *args, "--summary-json", str(summary)),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        env=env or load_env(),
    )
    return result, (json.loads(summary.read_text()) if summary.exists() else {})


def assert_nothing_fabricated(summary: dict[str, Any]) -> None:
    """Latency figures come from successful turns only: as many E2E samples as successful turns,
    and none at all when no turn succeeded."""
    succeeded = summary["turns"]["succeeded"]
    assert summary["samples"]["e2e_ms"] == succeeded
    assert summary["samples"]["ttft_ms"] <= succeeded
    if not succeeded:
        for name in LATENCIES:
            assert summary["samples"][name] == 0, name
            assert set(summary[name].values()) == {None}, name


def assert_errors_add_up(summary: dict[str, Any]) -> None:
    """Every error is one failed attempt, counted once under one kind."""
    connections, turns, pings = summary["connections"], summary["turns"], summary["pings"]
    assert summary["errors"] == turns["failed"] + pings["failed"] + connections["failed"]
    assert sum(summary["errors_by_kind"].values()) == summary["errors"]
    attempts = turns["attempted"] + pings["attempted"] + connections["failed"]
    if attempts:
        assert summary["error_rate"] == round(summary["errors"] / attempts, 6)


def plain_locust(
    args: list[str],
    tmp_path: Path,
    until: Callable[[dict[str, Any]], bool],
    env: dict[str, str] | None = None,
    cap_s: int = 90,
) -> subprocess.CompletedProcess[str]:
    """Run plain `locust -f loadtests/locustfile.py --headless ARGS` until one of its progress records
    (the locustfile's --asp-progress-file, every 0.2 s) satisfies `until`, then end it as a CI
    timeout does, SIGTERM: Locust summarises what it measured and exits with the verdict's code.
    `-t cap_s` ends it if that never comes. A fixed `-t 3s` measured nothing on a busy machine
    (Locust's start-up took the 3 s); this is as short as the machine allows."""
    progress = tmp_path / "progress.jsonl"
    progress.unlink(missing_ok=True)
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", *args]
    command += ["-t", f"{cap_s}s", "--asp-progress-file", str(progress), "--asp-progress-interval", "0.2"]
    out, err = tmp_path / "locust.out", tmp_path / "locust.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True, env=env, cwd=tmp_path)
        try:
            deadline = time.monotonic() + cap_s + 30
            while process.poll() is None and time.monotonic() < deadline:
                lines = progress.read_text().splitlines() if progress.exists() else []
                if any(until(json.loads(line)) for line in lines if line.endswith("}")):
                    process.send_signal(signal.SIGTERM)
                    break
                time.sleep(0.1)
            process.wait(60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    return subprocess.CompletedProcess(command, process.returncode, out.read_text(), err.read_text())
