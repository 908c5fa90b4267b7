"""`asp check` on slow but legal servers: the idle cases pass them, as they fail servers that break
the idle rules (tests/conformance/test_broken_servers.py).

A busy machine delays frames between a server's decision and the kit's reading of them. These
servers make such delays themselves, on a fast machine, so the kit's verdict on them is the same
every run: a verdict that depended on frames arriving at once would fail them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from conformance.options import CheckOptions
from conformance.outcomes import Outcome
from conformance.report.model import Report
from conformance.runner import run_check
from tests.support.events import session_event

IDLE_S = 1.0
IDLE_CLOSE = 4003


class Quiet:
    """An idle clock (ASP-HB-002): `due` is when the connection has been quiet `idle_s`."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self.since = time.monotonic()
        self.running = False  # a run is active: idleness does not count (ASP-HB-006)

    def restart(self) -> None:
        self.since = time.monotonic()

    @property
    def due(self) -> float:
        return self.since + self.idle_s


async def idle_closer(ws: ServerConnection, quiet: Quiet) -> None:
    """Close `IDLE_CLOSE` once the connection has been quiet for the idle timeout, no run active."""
    while True:
        await asyncio.sleep(max(0.01, quiet.due - time.monotonic()))
        if not quiet.running and time.monotonic() >= quiet.due:
            await ws.close(IDLE_CLOSE, "idle timeout")
            return


Handler = Callable[[ServerConnection], Coroutine[Any, Any, None]]


def slow_server(
    *,
    session_after: float = 0.0,
    pong_after: float = 0.0,
    complete_after: float = 0.0,
    idle_s: float = IDLE_S,
    pings_count: bool = True,
) -> Handler:
    """A legal ASP server with a 1 s idle timeout counted from the accept, from each data frame and
    from the end of each run, whose frames leave late: `session` `session_after` seconds after the
    accept, each pong `pong_after` seconds after its ping, each run's `complete` `complete_after`
    seconds after the run ended and its idle clock restarted. Runs play `asp-fixture:slow N MS`.
    Broken, to show the cases still fail what they should: an idle clock of `idle_s` under the 1 s
    announced, or one that application pings do not restart (`pings_count` false)."""

    async def handler(ws: ServerConnection) -> None:
        quiet, seq, lock = Quiet(idle_s), 0, asyncio.Lock()

        async def send(event: dict[str, Any], after: float = 0.0) -> None:
            nonlocal seq
            await asyncio.sleep(after)
            async with lock:
                seq += 1
                await ws.send(json.dumps({**event, "seq": seq}))

        async def play(message: dict[str, Any]) -> None:
            run = {"run_id": f"run_{message['id']}"}
            tokens, pace_ms = (int(n) for n in message["content"].split(" ")[1:3])
            quiet.running = True
            await send({"type": "run_started", **run, "message_id": message["id"], "conversation_id": "c"})
            for number in range(tokens):
                if number:
                    await asyncio.sleep(pace_ms / 1000)
                await send({"type": "text_delta", **run, "delta": f"t{number} "})
            quiet.restart()
            quiet.running = False
            await send({"type": "complete", **run, "finish_reason": "stop"}, complete_after)

        closer = asyncio.create_task(idle_closer(ws, quiet))
        tasks: set[asyncio.Task[None]] = set()
        started = session_event(
            "1.1", f"ses_{id(ws)}", "c", idle_timeout_ms=int(IDLE_S * 1000), heartbeat_interval_ms=5000
        )
        started["capabilities"] = ["fixtures"]
        await asyncio.sleep(session_after)
        try:
            await send({k: v for k, v in started.items() if k != "seq"})
            async for frame in ws:
                message = json.loads(frame)
                if pings_count or message.get("type") != "ping":
                    quiet.restart()
                if message.get("type") == "ping":
                    pong = {"type": "pong", **({"id": message["id"]} if "id" in message else {})}
                    task = asyncio.create_task(send(pong, pong_after))
                elif message.get("type") == "message":
                    task = asyncio.create_task(play(message))
                else:
                    continue
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except ConnectionClosed:
            pass
        finally:
            closer.cancel()
            for task in tasks:
                task.cancel()

    return handler


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0, subprotocols=["asp.v1"], ping_interval=None) as server:  # type: ignore[list-item]
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws"


async def check(url: str, *cases: str) -> Report:
    return await asyncio.wait_for(
        run_check(CheckOptions(url=url, tokens=["dummy"], include=list(cases), max_wait_s=10)), 120
    )


def verdicts(report: Report) -> dict[str, tuple[str, list[str]]]:
    return {
        r.case_id: (r.outcome.value, [f.message for f in r.findings if not f.passed]) for r in report.results
    }


async def test_a_session_read_late_is_no_early_idle_close():
    """The server's idle clock starts at the accept and its session reaches the kit 0.6 s later (a
    busy machine measured 0.8 s): the close comes a full idle timeout after the accept, on time.
    Once the kit counted from reading the session and failed ASP-HB-002 and ASP-HB-005 ("closed
    after 0.4s, before the timeout")."""
    cases = ("heartbeats.idle_timeout", "heartbeats.control_frames_do_not_count")
    async with serving(slow_server(session_after=0.6)) as url:
        report = await check(url, *cases)
    assert {case: verdict[0] for case, verdict in verdicts(report).items()} == {
        case: Outcome.PASS.value for case in cases
    }, verdicts(report)


async def test_slow_pongs_do_not_stretch_the_kit_s_keepalive_pings():
    """Each pong leaves 0.8 s after its ping, within the kit's wait for it. The kit pings a third of
    the idle timeout after its last ping; once it paced from the pong, left 1.1 s between pings,
    got a lawful idle close and failed ASP-HB-003."""
    async with serving(slow_server(pong_after=0.8)) as url:
        report = await check(url, "heartbeats.pings_keep_alive")
    assert verdicts(report) == {"heartbeats.pings_keep_alive": (Outcome.PASS.value, [])}


async def test_a_complete_read_late_is_no_idle_timer_counted_from_the_last_frame():
    """The run ends and the idle clock restarts; the complete reaches the kit 0.3 s later. The close
    comes a full idle timeout after the run's end, as ASP-HB-006 says. Once the kit counted from
    reading the complete, saw 0.7 s and failed ASP-HB-006; it now counts from when the paced run
    could have ended at the earliest."""
    async with serving(slow_server(complete_after=0.3)) as url:
        report = await check(url, "heartbeats.idle_counts_from_run_end")
    assert verdicts(report) == {"heartbeats.idle_counts_from_run_end": (Outcome.PASS.value, [])}


async def test_the_idle_cases_still_fail_an_early_close_and_pings_that_do_not_count():
    """The same server closing 0.6 s after the accept while it announces 1 s fails ASP-HB-002; one
    whose idle clock ignores application pings fails ASP-HB-003."""
    async with serving(slow_server(idle_s=0.6)) as url:
        early = await check(url, "heartbeats.idle_timeout")
    assert verdicts(early)["heartbeats.idle_timeout"][0] == Outcome.FAIL.value
    assert any("before the timeout" in m for m in verdicts(early)["heartbeats.idle_timeout"][1])
    async with serving(slow_server(pings_count=False)) as url:
        deaf = await check(url, "heartbeats.pings_keep_alive")
    assert verdicts(deaf)["heartbeats.pings_keep_alive"][0] == Outcome.FAIL.value
    assert {f.requirement for r in deaf.results for f in r.findings if not f.passed} == {"ASP-HB-003"}
