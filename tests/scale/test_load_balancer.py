"""`asp check` through HAProxy (deploy/haproxy.cfg) in front of two server processes on one Redis
and one PostgreSQL: every case passes (issue 13). The load balancer spreads the kit's connections
over both (least connections, no stickiness), so its duplicate, resume, limit and history cases
cross processes."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reference_server.config import ENV_PREFIX
from tests.conformance.conftest import CHECK_SETTINGS
from tests.support.server import SECRET
from tests.support.services import Pair

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"
HAPROXY_START_S = 60  # an upper bound for two CI runs on two cores; an exited haproxy fails at once


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def haproxy_config(port: int, backends: list[int]) -> str:
    """deploy/haproxy.cfg with this test's ports: the file as shipped, not a copy of it."""
    text = DEPLOY.read_text().replace("bind 127.0.0.1:8000", f"bind 127.0.0.1:{port}")
    servers = re.findall(r"^ *server asp\d .*$", text, flags=re.M)
    assert len(servers) == len(backends)
    for line, backend in zip(servers, backends, strict=True):
        text = text.replace(line, re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{backend}", line))
    return text


def test_asp_check_passes_in_full_through_haproxy(pair: Pair, tmp_path: Path) -> None:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.fail(
            "haproxy missing: run `tests/services.sh start` (make test does) or apt-get install haproxy"
        )
    # The kit's idle cases time the server's close from their side of the proxy: an idle timeout
    # longer than CHECK_SETTINGS' 1 s keeps the extra hop's latency on a busy machine a small part.
    settings = {key.removeprefix(ENV_PREFIX).lower(): value for key, value in CHECK_SETTINGS.items()}
    a, b = pair(**(settings | {"idle_timeout_ms": "3000"}))
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy_config(port, [int(s.url.split(":")[2].split("/")[0]) for s in (a, b)]))
    balancer = subprocess.Popen(
        [haproxy, "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + HAPROXY_START_S
        while not listening(port):
            if balancer.poll() is not None:
                assert balancer.stderr is not None
                pytest.fail(f"haproxy exited with code {balancer.returncode}:\n{balancer.stderr.read()}")
            assert time.monotonic() < deadline, f"haproxy did not listen within {HAPROXY_START_S} s"
            time.sleep(0.05)
        report_file = tmp_path / "report.json"
        url = f"ws://127.0.0.1:{port}/ws/chat"
        command = [sys.executable, "-m", "asp_cli.main", "check", url, "--jwt-secret", SECRET]
        command += ["--jwt-algorithms", "HS256", "--quiet"]  # the reference server takes HS256 only
        result = subprocess.run(
            [*command, "--json-file", str(report_file)], capture_output=True, text=True, timeout=180
        )
        report = json.loads(report_file.read_text())
        not_passing = {
            c["id"]: (c["outcome"], c["reason"]) for c in report["cases"] if c["outcome"] != "pass"
        }
        assert result.returncode == 0 and not_passing == {}, (not_passing, result.stdout[-2000:])
        assert "session opened" in a.logs and "session opened" in b.logs  # both instances served
    finally:
        balancer.terminate()
        balancer.wait(10)
