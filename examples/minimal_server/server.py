"""The server: the websockets library's asyncio server, the handshake hooks and graceful shutdown.

`serve(config)` listens, prints `listening on ws://HOST:PORT/PATH` once the port is bound, and
returns after SIGTERM (or SIGINT) once every connection is closed.

The transport settings carry three requirements by themselves: `max_size` closes a message
larger than `max_message_bytes` with 1009, whole message counted, a message of exactly the limit
accepted (ASP-LIM-003, ASP-LIM-010); text that is not UTF-8 fails with 1007 (ASP-TRN-004);
compression is off. The library's own keepalive is off: `connection.py` pings so that a dead peer
gets 4005 rather than the library's 1011.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import TextIO

from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as websockets_serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from examples.minimal_server import auth, codes
from examples.minimal_server.admission import Refused, Slots, check_version_and_user
from examples.minimal_server.config import Config
from examples.minimal_server.connection import Connection
from examples.minimal_server.handshake import Offer, offered_subprotocols, select_subprotocol
from examples.minimal_server.ratelimit import RateLimit
from examples.minimal_server.runs import Run
from examples.minimal_server.sessions import SessionTable
from examples.minimal_server.store import Store

log = logging.getLogger("asp.minimal")


class App:
    """Everything shared by the connections of one server process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = Store(config.database)
        self.sessions = SessionTable(config.session_ttl_ms)
        self.slots: Slots[Connection] = Slots(config.max_connections)
        self.rate = RateLimit(config.rate_limit_messages, config.rate_limit_window_ms)
        self.runs: set[Run] = set()
        self.shutting_down = False

    def track(self, run: Run) -> None:
        """Remember a started `run` until its task ends, so shutdown can wait for it."""
        assert run.task is not None, "start the run first"
        self.runs.add(run)
        run.task.add_done_callback(lambda _: self.runs.discard(run))

    # --- the websockets hooks --------------------------------------------------------------

    def process_request(self, websocket: ServerConnection, request: Request) -> Response | None:
        """Only the configured path upgrades; everything else is 404."""
        if Offer.read(request.path, []).path != self.config.path:
            return websocket.respond(404, "Not Found\n")
        return None

    def select_subprotocol(
        self, websocket: ServerConnection, subprotocols: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        """See `handshake.select_subprotocol` (ASP-VER-001, ASP-VER-002, ASP-VER-006)."""
        chosen = select_subprotocol(Offer.read("", list(subprotocols)))
        return Subprotocol(chosen) if chosen else None

    async def handle(self, websocket: ServerConnection) -> None:
        """One accepted WebSocket: refuse it with a close code (ASP-TRN-002, ASP-TRN-005), or serve it."""
        request = websocket.request
        assert request is not None  # the handler runs after the handshake
        offer = Offer.read(request.path, offered_subprotocols(_protocols(request.headers)))
        user = auth.user_of(offer.token, self.config.jwt_secret)
        verdict = check_version_and_user(offer, user)
        if verdict is None and user is not None:
            connection = Connection(websocket, self, user)
            admitted = self.slots.admit(user, connection)
            if not isinstance(admitted, Refused):
                if admitted is not None:
                    admitted.close(codes.SUPERSEDED, "a newer connection of this user", flush=False)
                await self._serve(connection, offer)
                return
            verdict = admitted
        assert verdict is not None
        await websocket.close(verdict.code, verdict.reason)

    async def _serve(self, connection: Connection, offer: Offer) -> None:
        try:
            connection.open(offer.conversation_id)
            log.info("session opened for a user; %d connected", len(self.slots))
            await connection.serve()
        finally:
            self.slots.release(connection.user, connection)

    # --- shutdown --------------------------------------------------------------------------

    async def shut_down(self) -> None:
        """Graceful shutdown (ASP-CLS-002, ASP-CLS-005): messages are refused with `shutting_down`,
        runs get `shutdown_grace_ms` to finish, the rest end with `error shutting_down` and
        `complete error` (stored first), then every connection closes with 1001."""
        self.shutting_down = True
        waiting = [asyncio.create_task(run.done.wait()) for run in self.runs]
        if waiting:
            await asyncio.wait(waiting, timeout=self.config.shutdown_grace_ms / 1000)
        for run in list(self.runs):
            run.stop("shutdown")
        cut = [asyncio.create_task(run.done.wait()) for run in self.runs]
        if cut:
            await asyncio.wait(cut, timeout=5)
        for connection in self.slots.connections():
            connection.close(codes.GOING_AWAY, "the server is shutting down", flush=True)


def _protocols(headers: Headers) -> list[str]:
    return headers.get_all("Sec-WebSocket-Protocol")


async def serve(config: Config, out: TextIO = sys.stdout) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully and return."""
    app = App(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with websockets_serve(
            app.handle,
            config.host,
            config.port,
            process_request=app.process_request,
            select_subprotocol=app.select_subprotocol,
            compression=None,
            max_size=config.max_message_bytes,
            ping_interval=None,
            close_timeout=2,
            server_header=None,
        ) as server:
            host, port = server.sockets[0].getsockname()[:2]
            print(f"listening on ws://{host}:{port}{config.path}", file=out, flush=True)
            await stop.wait()
            log.info("shutting down")
            server.close(close_connections=False)  # stop accepting; open connections go on for now
            await app.shut_down()
    finally:
        app.store.close()
