"""Servers under measurement run in their own processes, so client and server do not share a core.

Each in a process group of its own: Ctrl-C, which a terminal sends to its foreground group, is the
bench's to answer; the bench stops its servers itself (`Served.stop`)."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO

from reference_server.config import without_settings

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
URL_LINE = re.compile(r"listening on (ws://\S+)")
ERROR_LINES = 20  # of a server's stderr, kept to say why it did not start
# How long a server has to announce its URL. Under 2 s on a quiet machine; 30 s was not enough on a
# busy one (load 11 on 2 cores). A server that exits is given up on at once, whatever is left of it.
START_TIMEOUT_S = 120.0


def server_environ(settings: Mapping[str, str]) -> dict[str, str]:
    """The environment of a server under measurement: this process's, without any variable the
    reference server reads as a setting (`without_settings`: a shell's ASP_REDIS_URL or ASP_MODEL
    must not change the server measured), then `settings`, the bench's own."""
    return without_settings(os.environ) | {"PYTHONUNBUFFERED": "1"} | dict(settings)


class DidNotStart(RuntimeError):
    """A server under measurement did not announce its URL: it exited (`exit_code`, with `said`, the
    last line it wrote to stderr) or said nothing within the time it had (`exit_code` None).

    `users_settings` names the user's settings it was given (`--redis-url`...), "" when it ran on
    the bench's alone; its starter fills it in (`loadtests.bench.run.Bench`)."""

    def __init__(self, module: str, exit_code: int | None, said: str, timeout: float) -> None:
        self.module, self.exit_code, self.said = module, exit_code, said
        self.users_settings = ""
        if exit_code is None:
            why = f"said nothing within {timeout:g} s (a busy machine?)"
        else:
            why = f"exited {exit_code}" + (f": {said}" if said else "")
        super().__init__(f"{module} did not start: {why}")


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


def _drain(stream: IO[str], keep: Callable[[str], object]) -> None:
    """Read `stream` to its end, so the server never blocks on a full pipe, `keep`ing each line."""
    for line in stream:
        keep(line)


def _until_url(lines: queue.Queue[str]) -> Callable[[str], None]:
    """A `keep` for stdout that queues its lines up to the one announcing the URL, none after."""
    announced = False

    def keep(line: str) -> None:
        nonlocal announced
        if not announced:
            lines.put(line)
            announced = URL_LINE.search(line) is not None

    return keep


def start(
    module: str,
    env: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT_S,
    prefix: list[str] | None = None,
    args: list[str] | None = None,
    workers: int = 0,
) -> Served:
    """Start `python -m module args...` (after `prefix`, e.g. a profiler's command) on `env` and no
    inherited setting (`server_environ`), and wait for its URL; with `workers`, also for that many
    child processes (`asp serve --workers N` forks them after announcing its URL).

    Raises DidNotStart when it exits (as soon as it has, announced or not) or says nothing within
    `timeout` seconds; its process group is killed then (a worker it forked included)."""
    process = subprocess.Popen(
        [*(prefix or []), sys.executable, "-m", module, *(args or [])],
        env=server_environ(env or {}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        process_group=0,
    )
    assert process.stdout is not None and process.stderr is not None
    lines: queue.Queue[str] = queue.Queue()  # stdout's, until its URL (then nothing reads them)
    errors: deque[str] = deque(maxlen=ERROR_LINES)  # stderr's last, to say why it did not start
    readers = [
        threading.Thread(target=_drain, args=(process.stdout, _until_url(lines)), daemon=True),
        threading.Thread(target=_drain, args=(process.stderr, errors.append), daemon=True),
    ]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + timeout
    url = _announced(process, lines, deadline)
    if url is not None:
        served = Served(process, url)
        while workers and process.poll() is None and time.monotonic() < deadline:
            if len(served.cpu_by_process()) > workers:
                break
            time.sleep(0.1)
        if process.poll() is None:
            time.sleep(0.5 if not workers else 2.0)  # lifespan start-up after the announcement
        if process.poll() is None:
            return served
    exited = process.poll()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # its own group: the workers it forked too
    process.wait(5)
    readers[1].join(2)  # the last of its stderr
    said = next((line.strip() for line in reversed(errors) if line.strip()), "")
    raise DidNotStart(module, exited, said, timeout)


def _announced(process: subprocess.Popen[str], lines: queue.Queue[str], deadline: float) -> str | None:
    """The URL `process` announces on stdout (`lines`); None when it exits first or says nothing
    before `deadline` (time.monotonic)."""
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=min(0.2, max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            if process.poll() is not None and lines.empty():
                return None
            continue
        match = URL_LINE.search(line)
        if match:
            return match.group(1)
    return None
