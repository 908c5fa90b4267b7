"""SIGTERM to `asp bench` alone (a CI timeout, `kill PID`) ends the run as Ctrl-C does: one line,
exit 143, and no process it started left behind (servers in their own process groups, generator
workers, multiprocessing's manager and resource tracker)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time


def _in_session(session: int, pattern: str = "") -> list[str]:
    """The processes of `session` (whose command line matches `pattern`), as `pid command` lines."""
    command = ["pgrep", "-a", "-s", str(session)] + (["-f", "--", pattern] if pattern else [])
    found = subprocess.run(command, capture_output=True, text=True)
    return found.stdout.splitlines()


def test_sigterm_to_asp_bench_alone_stops_every_process_it_started(tmp_path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "asp_cli.main", "bench", "--quick"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        start_new_session=True,  # its own session: every process it starts is found by it
    )
    try:
        deadline = time.monotonic() + 120
        while not _in_session(process.pid, "-m reference_server"):  # its servers are up
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "asp bench started no reference server"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)  # the bench alone, not its group
        out, err = process.communicate(timeout=120)
        assert process.returncode == 143, err
        assert out == "" and "Traceback" not in err, err
        assert err.strip().splitlines()[-1] == "asp bench: terminated; no results", err
        deadline = time.monotonic() + 30  # multiprocessing's resource tracker ends on its own, soon after
        while left := _in_session(process.pid):
            assert time.monotonic() < deadline, f"processes of the bench lived on: {left}"
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        for line in _in_session(process.pid):  # a survivor in a group of its own
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split()[0]), signal.SIGKILL)
