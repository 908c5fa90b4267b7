"""The client under test as a subprocess speaking the driver contract (spec/CLIENT-DRIVER.md).

Environment: ASP_URL, ASP_TOKEN, ASP_SCENARIO beside the kit's own. Standard input: one JSON
command a line (`{"send": TEXT}`, `{"cancel": true}`), end of input to finish. Standard output:
one JSON record a line (`run`, `state`, `error`), each kept with the time it arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from conformance.wire import Transcript
from spec import jsondepth

Record = dict[str, Any]
RECORD_KINDS = ("run", "state", "error")
STDERR_KEPT = 4000  # characters of the client's standard error kept for the report
STDERR_LINES = 5  # lines of it a result's reason quotes
# What the kit reads of a client's standard output before it calls it a flood (spec/CLIENT-DRIVER.md:
# one record a line, nothing else): a line's length, the whole output's, and lines that are no record.
LINE_LIMIT = 64 * 1024  # bytes
OUTPUT_LIMIT = 8 * 1024 * 1024  # bytes per scenario
PROBLEM_LIMIT = 100  # lines that break the contract


class CannotStart(Exception):
    """The command could not be started at all (not found, not executable)."""


@dataclass
class Reported:
    """One record of the client's standard output, with its arrival time (monotonic)."""

    t: float
    record: Record


class ClientProcess:
    """Run `argv` with the driver environment; use `await start()`, then `send`, `wait_for`, and
    always `await finish()` (end of input, then termination of its process group if needed)."""

    def __init__(self, argv: list[str], environment: dict[str, str], transcript: Transcript) -> None:
        self.argv = argv
        self.environment = environment
        self.transcript = transcript
        self.reports: list[Reported] = []
        self.problems: list[str] = []  # output lines that break the contract
        # Why the kit stopped reading the client's standard output and ended it (a flood that
        # breaks the driver contract), or None.
        self.flooded: str | None = None
        self.stderr = ""
        self.returncode: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()

    async def start(self) -> None:
        """Start the command. Raises CannotStart when it cannot be executed."""
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, **self.environment},
                start_new_session=True,  # its own process group, so finish() reaches its children
                limit=LINE_LIMIT,
            )
        except OSError as exc:
            raise CannotStart(f"cannot run {self.argv[0]!r}: {exc.strerror or exc}") from None
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read_stdout()), loop.create_task(self._read_stderr())]

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def exit_status(self) -> int | None:
        """The exit status once the process has exited (negative: the signal), else None."""
        return self._process.returncode if self._process is not None else None

    async def exited(self) -> int | None:
        """Wait until the process has exited and its output has been read to the end; its exit
        status (negative: the signal that ended it), or None when it never started."""
        if self._process is None:
            return None
        status = await self._process.wait()
        if self._tasks:  # asyncio.wait, not gather: cancelling this wait must not cancel the readers
            await asyncio.wait(self._tasks)
        return status

    def stderr_tail(self, lines: int = STDERR_LINES) -> str:
        """The last `lines` non-empty lines of the client's standard error, whole, joined by " | "
        (a Python traceback's last frame and its exception line)."""
        kept = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        return " | ".join(kept[-lines:])

    async def send(self, command: Record) -> None:
        """Write one command line to the client's standard input (ignored once it has exited)."""
        line = json.dumps(command)
        self.transcript.add("send", text=f"stdin {line}")
        if self._process is None or self._process.stdin is None or not self.running:
            return
        with contextlib.suppress(ConnectionError):
            self._process.stdin.write(line.encode() + b"\n")
            await self._process.stdin.drain()

    async def wait_for(
        self, matches: Callable[[Record], bool], timeout: float, *, after: int = 0
    ) -> Reported | None:
        """The first record (from the `after`-th on) that matches, waiting up to `timeout` seconds;
        None when none came in time or the client exited without it."""
        deadline = time.monotonic() + timeout
        while True:
            for reported in self.reports[after:]:
                if matches(reported.record):
                    return reported
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (not self.running and all(t.done() for t in self._tasks)):
                return None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def records(self, kind: str) -> list[Record]:
        return [r.record for r in self.reports if r.record.get("event") == kind]

    async def finish(self, grace: float) -> None:
        """End of input (the contract: close with 1000 and exit 0), then SIGTERM and SIGKILL to
        the process group if it has not exited within `grace` seconds."""
        process = self._process
        if process is None:
            return
        if process.stdin is not None and not process.stdin.is_closing():
            self.transcript.add("send", text="stdin <end of input>")
            with contextlib.suppress(ConnectionError):
                process.stdin.close()
        for sig, wait in ((None, grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), wait)
                break
        # Children (a browser) may outlive the driver: the group goes in any case.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        for task in self._tasks:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, 2)
        self.returncode = process.returncode
        self.transcript.add(
            "close", code=self.returncode if self.returncode is not None else -1, reason="exit"
        )

    async def _read_stdout(self) -> None:
        """Read records off the client's standard output until it ends, or until it floods: a line
        over LINE_LIMIT bytes, more than OUTPUT_LIMIT bytes, or more than PROBLEM_LIMIT lines that
        are no record. A flood sets `flooded` and ends the client's process group, so no wait
        outlasts it."""
        process = self._process
        assert process is not None and process.stdout is not None
        read = 0
        while True:
            try:
                line = await process.stdout.readline()
            except ValueError:  # asyncio's limit (LINE_LIMIT): no newline within it
                self._flood(f"a line of standard output longer than {LINE_LIMIT} bytes")
                break
            if not line:
                break
            read += len(line)
            if read > OUTPUT_LIMIT:
                self._flood(f"more than {OUTPUT_LIMIT} bytes of standard output in one scenario")
                break
            text = line.decode("utf-8", "replace").strip()
            if not text:
                continue
            self.transcript.add("recv", text=f"stdout {text}")
            try:
                record = jsondepth.loads(text)
            except (ValueError, RecursionError):
                self.problems.append(f"not JSON: {text[:120]!r}")
            else:
                if isinstance(record, dict) and record.get("event") in RECORD_KINDS:
                    self.reports.append(Reported(time.monotonic(), record))
                    self._changed.set()
                    continue
                self.problems.append(f"not a run, state or error record: {text[:120]!r}")
            if len(self.problems) > PROBLEM_LIMIT:
                self._flood(f"more than {PROBLEM_LIMIT} lines of standard output that are no record")
                break
        self._changed.set()
        # After a flood, read on to the end unrecorded: a reader that stops leaves the pipe paused
        # with data in it, so its transport never sees the end, never closes, and is collected
        # after the loop closed ("Event loop is closed"). The process group is killed: the end is near.
        while self.flooded is not None and await process.stdout.read(LINE_LIMIT):
            pass

    def _flood(self, what: str) -> None:
        """The client floods its standard output: record why, and end its process group."""
        self.flooded = f"{what} (the driver contract, spec/CLIENT-DRIVER.md: one JSON record a line)"
        self.problems.insert(0, f"a flood: {self.flooded}")  # first: reasons quote the first few
        self.transcript.add("error", reason=f"stdout flood: {self.flooded}")
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)

    async def _read_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        while chunk := await self._process.stderr.read(4096):
            self.stderr = (self.stderr + chunk.decode("utf-8", "replace"))[-STDERR_KEPT:]
