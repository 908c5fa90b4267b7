"""Locust's own web UI shows the streaming figures: a real `asp load --web-port 0` and real HTTP."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from typing import Any

from tests.loadtests.asp_load import asp_load_command, load_env
from tests.loadtests.servers import running


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body


def _lines(stream: Any, into: list[str]) -> None:
    for line in stream:
        into.append(line)


def test_the_web_ui_serves_itl_tpot_exact_percentiles_and_the_slo_verdict(tmp_path):
    args = [
        "--users",
        "1",
        "--spawn-rate",
        "1",
        "--run-time",
        "8s",
        "--think-min",
        "0.05",
        "--think-max",
        "0.1",
    ]
    args += ["--web-port", "0", "--slo", "itl_p99_ms=60000", "--jwt-secret", "web-secret"]
    with running("paced") as url:
        process = subprocess.Popen(
            asp_load_command(url, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=load_env(),
            cwd=tmp_path,
        )
        errors: list[str] = []
        reader = threading.Thread(target=_lines, args=(process.stderr, errors), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 60
            while not any(line.startswith("web UI: ") for line in errors):
                assert time.monotonic() < deadline and process.poll() is None, "".join(errors)
                time.sleep(0.1)
            base = next(line for line in errors if line.startswith("web UI: ")).split()[-1]
            while True:  # until the UI has a few measured turns (bounded by the run itself)
                summary = json.loads(_get(base + "asp/summary"))
                if summary["turns"]["succeeded"] >= 3 or process.poll() is not None:
                    break
                time.sleep(0.2)
            stats = json.loads(_get(base + "stats/requests"))
            page = _get(base).decode()
        finally:
            out, _ = process.communicate(timeout=90)
    assert process.returncode == 0, "".join(errors) + out
    assert summary["turns"]["succeeded"] >= 3 and summary["samples"]["itl_ms"] > 0
    tabs = {entry["key"]: entry["data"] for entry in stats["extended_stats"]}
    assert set(tabs) == {"asp-latency", "asp-counts", "asp-slo"}
    figures = {row["figure"]: row for row in tabs["asp-latency"]}
    assert {"TTFT", "ITL", "TPOT", "E2E"} <= set(figures)
    assert figures["ITL"]["samples"] > 0 and figures["ITL"]["p999"] != "-"
    assert "vLLM" in figures["TPOT"]["definition"]
    slo = {row["slo"]: row for row in tabs["asp-slo"]}
    assert slo["itl_p99_ms"]["verdict"] == "pass" and slo["verdict"]["verdict"] == "PASS"
    assert "turns succeeded" in {row["name"] for row in tabs["asp-counts"]}
    assert "ASP latency" in page and "asp-slo" in page  # the tabs, in the page's template arguments
