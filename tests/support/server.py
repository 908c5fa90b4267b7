"""A real reference server in a subprocess on 127.0.0.1, with its own SQLite file and captured logs."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.bench.processes import START_TIMEOUT_S, URL_LINE
from reference_server.auth import mint
from reference_server.config import without_settings

SECRET = "test-secret-for-the-asp-suite-0123456789abcdef-0123456789abcdef-0123"
DEV_SERVE = ("serve", "--dev")  # with module "asp_cli.main": `asp serve --dev`, development mode

FAST_DEFAULTS = {
    "ASP_TOKEN_DELAY_MS": "0",
    "ASP_FIXTURES": "true",
    "ASP_HEARTBEAT_INTERVAL_MS": "5000",
    "ASP_IDLE_TIMEOUT_MS": "30000",
    "ASP_SESSION_TTL_MS": "30000",
    "ASP_SHUTDOWN_GRACE_MS": "3000",
}
# START_TIMEOUT_S and URL_LINE are the bench's (loadtests.bench.processes): one bound for a server's start
# on a starved machine (two CI runs on two cores), one reading of its announcement


@dataclass
class ServerProcess:
    database: Path
    settings: dict[str, str] = field(default_factory=dict)
    module: str = "reference_server"
    ready_marker: str | None = "Application startup complete"  # None: ready once the URL is printed
    args: tuple[str, ...] = ()  # after `python -m module`, e.g. ("serve", "--dev") for asp_cli.main
    open_files: int | None = None  # RLIMIT_NOFILE (soft and hard) of the server process
    url: str = ""
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    def env(self) -> dict[str, str]:
        env = without_settings(os.environ)
        env.update(FAST_DEFAULTS)
        env.update(
            {
                "ASP_JWT_SECRET": SECRET,
                "ASP_DATABASE_URL": f"sqlite+aiosqlite:///{self.database}",
                "ASP_HOST": "127.0.0.1",
                "ASP_PORT": "0",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.settings)
        return env

    def start(self, timeout: float = START_TIMEOUT_S) -> ServerProcess:
        """Start the process and wait until it is ready: its URL and `ready_marker` printed.

        `timeout` is an upper bound for a starved machine (two CI runs on two cores); a quiet one
        never comes near it. A process that exits before it is ready fails at once, not at the bound.

        Raises:
            RuntimeError: the process exited before it was ready, or was not ready within
                `timeout` seconds (then it is stopped); the message ends with its whole output.
        """
        self.output = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=self._limit_files if self.open_files else None,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.process.poll() is not None:
                self._reader.join(5)  # the rest of what it said before it exited
                raise RuntimeError(
                    f"server exited with code {self.process.returncode} before it was ready:\n{self.logs}"
                )
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(f"server was not ready within {timeout:g} s:\n{self.logs}")
            time.sleep(0.02)
        return self

    def _ready(self) -> bool:
        """Whether the output has the URL line (then `url` is set) and `ready_marker` anywhere."""
        lines = list(self.output)
        for line in lines:
            match = URL_LINE.search(line)
            if match:
                self.url = match.group(1)
                return self.ready_marker is None or any(self.ready_marker in seen for seen in lines)
        return False

    def _limit_files(self) -> None:
        assert self.open_files is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def token(self, user: str, ttl: int = 3600) -> str:
        return mint(user, SECRET, ttl_seconds=ttl)

    @property
    def logs(self) -> str:
        return "".join(self.output)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (graceful shutdown), then SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        return self.process.returncode

    def wait_for_log(self, text: str, timeout: float) -> bool:
        """Whether `text` appears in the server's output within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.logs:
                return True
            time.sleep(0.02)
        return text in self.logs

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()
