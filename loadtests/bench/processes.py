"""Servers under measurement run in their own processes, so client and server do not share a core.

Each in a process group of its own: Ctrl-C, which a terminal sends to its foreground group, is the
bench's to answer; the bench stops its servers itself (`Served.stop`)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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

    def cpu_by_process(self) -> dict[int, float]:
        """CPU seconds (user + system, from /proc) of the server process and each live descendant
        (the workers of `asp serve --workers N`), by pid."""
        pids, found = [self.process.pid], {}
        while pids:
            pid = pids.pop()
            try:
                with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as children:
                    pids.extend(int(child) for child in children.read().split())
            except FileNotFoundError:  # exited meanwhile
                continue
            found[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        return found

    def cpu_s(self) -> float:
        """CPU seconds of the server and its live descendants together."""
        return sum(self.cpu_by_process().values())

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 10 s; then SIGKILL to any descendant (a worker) still running."""
        descendants = {pid: _started(pid) for pid in self.cpu_by_process() if pid != self.process.pid}
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        for pid, started in descendants.items():
            if started is not None and _started(pid) == started:  # the same process, not a reused pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def machine_cpu_s() -> float:
    """CPU seconds every core of this machine has been busy since boot (/proc/stat: all but idle
    and iowait), whoever ran: over a phase, the difference shows whether the machine was full."""
    with open("/proc/stat", encoding="ascii") as stat:
        ticks = [int(field) for field in stat.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS


def _started(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot, /proc), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (FileNotFoundError, IndexError):
        return None


def start(
    module: str,
    env: dict[str, str] | None = None,
    timeout: float = 30,
    prefix: list[str] | None = None,
    args: list[str] | None = None,
    workers: int = 0,
) -> Served:
    """Start `python -m module args...` (after `prefix`, e.g. a profiler's command) and wait for its
    URL; with `workers`, also for that many child processes (`asp serve --workers N` forks them
    after announcing its URL). Raises RuntimeError when it exits or says nothing within `timeout`."""
    process = subprocess.Popen(
        [*(prefix or []), sys.executable, "-m", module, *(args or [])],
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        process_group=0,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        match = re.search(r"listening on (ws://\S+)", line)
        if match:
            served = Served(process, match.group(1))
            while workers and len(served.cpu_by_process()) <= workers and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5 if not workers else 2.0)  # lifespan start-up after the announcement
            return served
        if process.poll() is not None:
            break
    process.kill()
    raise RuntimeError(f"{module} did not start")
