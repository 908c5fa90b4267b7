"""`python -m loadtests.bench.profile stream`: the figures that explain server_vs_framework."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from reference_server.server import event_loop_name


def profile(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtests.bench.profile", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_stream_prints_tokens_per_event_client_cpu_and_the_framework_beside_the_server() -> None:
    done = profile("stream", "300", "--setting", "ASP_COALESCE_MS=0")
    assert done.returncode == 0, done.stderr
    figures = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    for name in (
        "server_vs_framework",
        "tokens_per_event",
        "server_cpu_us_per_token",
        "client_cpu_share",
        "framework_deltas_per_s",
        "framework_cpu_us_per_delta",
        "server_us_per_token_over_framework",
    ):
        median, low, high = figures[name]
        assert low <= median <= high, name
    # the setting reached the server: no coalescing, one event per token (and a few that are not deltas)
    assert 0.95 < figures["tokens_per_event"][2] <= 1.0
    assert figures["framework_deltas_per_s"][0] > 0
    # the framework beside the server on the server's loop (uvloop's where it is installed; the
    # profile ran it on asyncio's), as the bench runs it: else the ratio compares two loops
    assert figures["event_loop"] == event_loop_name("auto")


@pytest.mark.parametrize("setting", ["COALESCE_MS=0", "ASP_COALESCE_SM=0", "ASP_COALESCE_MS"])
def test_a_setting_must_name_a_server_setting(setting: str) -> None:
    done = profile("stream", "10", "--setting", setting)
    assert done.returncode == 2
    assert "ASP_NAME=VALUE" in done.stderr and repr(setting) in done.stderr
