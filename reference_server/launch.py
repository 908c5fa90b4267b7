"""Starting and stopping the server as a user meets it: one line per problem, never a traceback.

`asp serve` and `python -m reference_server` both run through `run`:

- SIGINT (Ctrl-C) and SIGTERM shut the server down gracefully (uvicorn's drain, ASP_SHUTDOWN_GRACE_MS
  for runs), then print one line and exit 0;
- a setting that does not validate prints one line per problem naming its variable and flag, exit 2
  (a secret's value is never echoed);
- an address that cannot be bound (port in use, no permission, an address not on this host), a model
  this installation cannot run (`reference_server.agent.factory.ModelUnavailable`, naming the extra to
  install) and development mode off loopback print one line, exit 2.
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TextIO

from pydantic import SecretStr, ValidationError

from reference_server.config import Settings, env_name

EXIT_OK = 0
EXIT_USAGE = 2


class StartupError(Exception):
    """The server cannot start; the message, one line, says why and what to do (exit 2)."""


class Stopped(BaseException):
    """A stop signal arrived (raised from the signal handler, after uvicorn's graceful shutdown).

    A BaseException, like KeyboardInterrupt, so no `except Exception` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signal_name = signal.Signals(signum).name


_installed_by: int | None = None  # the process whose run() installed _stop


def _stop(signum: int, frame: FrameType | None) -> None:
    """Raise Stopped in the process that called run(); in a process forked from it (a worker) the
    signal has done its work once uvicorn re-raises it after draining: return, and let it exit 0."""
    if os.getpid() == _installed_by:
        raise Stopped(signum)


def setting_problems(error: ValidationError, flags: bool = True) -> list[str]:
    """One line per invalid setting: `ASP_NAME (--name): message[, got VALUE]`; secrets never shown.

    `flags=False` leaves out the `asp serve` flag, for commands that read only the variables."""
    lines = []
    for problem in error.errors(include_url=False):
        name = str(problem["loc"][0]) if problem["loc"] else ""
        field = Settings.model_fields.get(name)
        flag = f" (--{name.replace('_', '-')})" if flags else ""
        where = f"{env_name(name)}{flag}" if field else "settings"
        message = str(problem["msg"]).removeprefix("Value error, ")
        secret = field is not None and field.annotation is not None and SecretStr in _args(field.annotation)
        shown = "" if secret or problem["type"] == "value_error" else f", got {problem.get('input')!r}"
        lines.append(f"{where}: {message}{shown}")
    return lines


def _args(annotation: object) -> tuple[object, ...]:
    return (annotation, *getattr(annotation, "__args__", ()))


def bind_problem(host: str, port: int, error: OSError) -> StartupError:
    """The one-line reason an address cannot be listened on."""
    where = f"{host}:{port}"
    if error.errno == errno.EADDRINUSE:
        return StartupError(
            f"cannot listen on {where}: the port is in use (another server?). "
            "Choose another with --port N or ASP_PORT=N (make serve PORT=N); 0 picks a free one"
        )
    reason = error.strerror or str(error)
    return StartupError(f"cannot listen on {where}: {reason}. Choose another --host / --port")


def asp_command() -> str:
    """`asp` as the user can type it where they started the server: `asp` when that is on PATH,
    else the path they ran (`make serve` runs `.venv/bin/asp`, which is not on PATH)."""
    invoked = Path(sys.argv[0])
    if invoked.name != "asp":
        return "asp"  # `python -m ...`: tests and embedders know their own command
    on_path = shutil.which("asp")
    if on_path and Path(on_path).resolve() == invoked.resolve():
        return "asp"
    relative = os.path.relpath(invoked)
    return shlex.quote(relative if not relative.startswith("..") else str(invoked.resolve()))


def run(
    make_settings: Callable[[], Settings],
    start: Callable[[Settings], None],
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Build the settings and `start` the server on them until a stop signal; the exit code.

    `start` (reference_server.server.serve with its arguments bound) raises StartupError (or a
    subclass: NotLoopback, ModelUnavailable) with a one-line message when the server cannot start.
    Exit 0 after SIGINT/SIGTERM, 2 when the server could not start (each problem a line of `err`).
    """
    global _installed_by
    _installed_by = os.getpid()
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            settings = make_settings()
        except ValidationError as invalid:
            for line in setting_problems(invalid):
                print(f"error: {line}", file=err)
            return EXIT_USAGE
        start(settings)
    except Stopped as stopped:
        print(f"ASP reference server stopped ({stopped.signal_name}).", file=out)
        out.flush()
        return EXIT_OK
    except StartupError as problem:
        print(f"error: {problem}", file=err)
        return EXIT_USAGE
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK
