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
They are started with SIGINT blocked, inherited from the orchestrator, and unblock it once they
ignore it, so a Ctrl-C during their start-up (their imports take a while) is no traceback in them;
the orchestrator takes it once they are started.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing.managers import SyncManager
from typing import Any

from loadtests.bench import measure
from reference_server.server import event_loop_factory

BARRIER_TIMEOUT_S = 600.0
STARTUP_TIMEOUT_S = 120.0  # for every worker to be up: a busy machine starts interpreters slowly
_INTERRUPT = {signal.SIGINT}


def _work(name: str, kwargs: dict[str, Any]) -> Any:
    """In a worker: run the coroutine `measure.<name>(**kwargs)` to completion, on the event loop
    the servers run on (`measure.EVENT_LOOP`)."""
    with asyncio.Runner(loop_factory=event_loop_factory(measure.EVENT_LOOP)) as runner:
        return runner.run(getattr(measure, name)(**kwargs))


def _ready() -> bool:
    return True


def _ignore_interrupt() -> None:
    """In a worker or the manager, started with SIGINT blocked: Ctrl-C is the orchestrator's to
    answer, not a traceback here. Ignored, then unblocked (one that came meanwhile is dropped)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _INTERRUPT)


def _set_up(started: Any) -> None:
    """In a worker, before any call: _ignore_interrupt, then wait at `started` (the pool's start-up
    barrier) until every worker and the orchestrator are there. Broken or timed out, it goes on:
    the orchestrator, which waits there too, decides (and stops the pool)."""
    _ignore_interrupt()
    with contextlib.suppress(threading.BrokenBarrierError):
        started.wait()


@contextlib.contextmanager
def _interrupt_held() -> Iterator[None]:
    """SIGINT blocked in this thread, so in each process spawned meanwhile from it (a child inherits
    the mask); one that comes meanwhile is taken here when the block ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _INTERRUPT)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class Generator:
    """`processes` worker processes. Use as an async context manager: entering starts them all (and
    the manager behind the barriers) and returns once every one is up; `call` runs one measurement,
    `barrier(parties)` makes a barrier the workers (and the orchestrator) can share."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        context = multiprocessing.get_context("spawn")
        self._started = context.Barrier(processes + 1, timeout=STARTUP_TIMEOUT_S)
        self._pool = ProcessPoolExecutor(
            max_workers=processes, mp_context=context, initializer=_set_up, initargs=(self._started,)
        )
        self._manager = SyncManager(ctx=context)

    async def __aenter__(self) -> Generator:
        """Start the manager and the workers with SIGINT held (see _interrupt_held), then wait until
        every worker is at the start-up barrier: no figure includes an interpreter's start-up, and
        a Ctrl-C taken meanwhile stops them all. Raises DidNotStart after STARTUP_TIMEOUT_S."""
        loop = asyncio.get_running_loop()
        ready: list[asyncio.Future[bool]] = []
        try:
            with _interrupt_held():  # the spawns happen here, synchronously, from this thread
                self._manager.start(_ignore_interrupt)
                # a submit spawns a worker while none is idle: one each
                ready += [loop.run_in_executor(self._pool, _ready) for _ in range(self.processes)]
            await self._all_started(ready)
        except BaseException:
            for future in ready:  # what the stopped pool sets on them is not news
                if not future.cancel() and not future.cancelled():
                    future.exception()
            await self.__aexit__(BaseException)
            raise
        return self

    async def _all_started(self, ready: list[asyncio.Future[bool]]) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while self._started.n_waiting < self.processes:
            for future in ready:
                if future.done():
                    future.result()  # a worker that died starting: BrokenProcessPool
            if time.monotonic() > deadline:
                from loadtests.bench.processes import DidNotStart

                raise DidNotStart("the load generator", None, "", STARTUP_TIMEOUT_S)
            await asyncio.sleep(0.02)
        self._started.wait()  # the last party: every worker goes on
        await asyncio.gather(*ready)

    async def __aexit__(self, failed: type[BaseException] | None, *exc: object) -> None:
        if failed is not None:  # interrupted or failed: the measurement under way is not waited for
            # (the pool's own processes: ProcessPoolExecutor.terminate_workers comes with Python 3.14)
            for process in list((self._pool._processes or {}).values()):
                process.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)
        with contextlib.suppress(AttributeError):  # not started: no shutdown yet
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
