"""Servers under measurement run in their own processes, so client and server do not share a core."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str

    def rss_kib(self) -> int:
        with open(f"/proc/{self.process.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def start(
    module: str, env: dict[str, str] | None = None, timeout: float = 30, prefix: list[str] | None = None
) -> Served:
    """Start `python -m module` (after `prefix`, e.g. a profiler's command) and wait for its URL."""
    process = subprocess.Popen(
        [*(prefix or []), sys.executable, "-m", module],
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        match = re.search(r"listening on (ws://\S+)", line)
        if match:
            time.sleep(0.5)  # lifespan start-up after the announcement
            return Served(process, match.group(1))
        if process.poll() is not None:
            break
    process.kill()
    raise RuntimeError(f"{module} did not start")
