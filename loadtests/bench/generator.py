"""The load generator of `asp bench`: a pool of worker processes running `loadtests.bench.measure`.

Every measurement, floors and server alike, runs in a worker process of one pool, so they share
the client code and the process layout, and the orchestrating process (which starts servers and
reads their memory) never competes with the client it measures through. A figure that needs more
client than one process can give (a sweep level, thousands of connections) is split into shares,
one per process, lined up by a barrier.

Workers are spawned (not forked) so each starts with a clean interpreter and event loop. They, and
the manager process behind the barriers, ignore SIGINT: Ctrl-C reaches every process of the
terminal's process group, and only the orchestrator answers it (one line, exit 130); leaving with an
error, the orchestrator terminates the workers rather than waiting for the measurement they are in.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing.managers import SyncManager
from typing import Any

from loadtests.bench import measure

BARRIER_TIMEOUT_S = 600.0


def _work(name: str, kwargs: dict[str, Any]) -> Any:
    """In a worker: run the coroutine `measure.<name>(**kwargs)` to completion."""
    return asyncio.run(getattr(measure, name)(**kwargs))


def _ready() -> bool:
    return True


def _ignore_interrupt() -> None:
    """In a worker or the manager: Ctrl-C is the orchestrator's to answer, not a traceback here."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Generator:
    """`processes` worker processes. Use as an async context manager; `call` runs one measurement,
    `barrier(parties)` makes a barrier the workers (and the orchestrator) can share."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(
            max_workers=processes, mp_context=context, initializer=_ignore_interrupt
        )
        self._manager = SyncManager(ctx=context)
        self._manager.start(_ignore_interrupt)

    async def __aenter__(self) -> Generator:
        loop = asyncio.get_running_loop()
        # start every worker now, so no figure includes an interpreter's start-up
        await asyncio.gather(*[loop.run_in_executor(self._pool, _ready) for _ in range(self.processes)])
        return self

    async def __aexit__(self, failed: type[BaseException] | None, *exc: object) -> None:
        if failed is not None:  # interrupted or failed: the measurement under way is not waited for
            # (the pool's own processes: ProcessPoolExecutor.terminate_workers comes with Python 3.14)
            for process in list(self._pool._processes.values()):
                process.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._manager.shutdown()

    async def call(self, name: str, **kwargs: Any) -> Any:
        """Run `measure.<name>(**kwargs)` in one worker; returns what it returns, raises what it raises."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(_work, name, kwargs))

    def barrier(self, parties: int) -> Any:
        """A barrier for `parties` waiters across processes (a manager proxy, picklable)."""
        return self._manager.Barrier(parties, timeout=BARRIER_TIMEOUT_S)


async def wait(barrier: Any) -> None:
    """The orchestrator's wait at a shared barrier."""
    await asyncio.to_thread(barrier.wait)


def split(items: list[Any], per_process: int, processes: int) -> list[list[Any]]:
    """`items` in contiguous shares of about `per_process` each, over at most `processes` shares."""
    count = max(1, min(processes, -(-len(items) // max(1, per_process))))
    size = -(-len(items) // count)
    return [items[i : i + size] for i in range(0, len(items), size)]
