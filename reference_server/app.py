"""The FastAPI application: the ASP endpoint, a health probe, and the lifespan that owns the hub."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from os import PathLike
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from reference_server import __version__
from reference_server.auth import mint
from reference_server.config import Settings
from reference_server.endpoint import chat
from reference_server.hub import Hub
from reference_server.protocol.browser import protocol_module_source

STATIC = Path(__file__).with_name("static")
PROTOCOL_MODULE = protocol_module_source()


SERVING_GC_THRESHOLDS = (10_000, 50, 100)


@contextmanager
def collector_for_serving() -> Iterator[None]:
    """The garbage collector set for serving, from start-up done to shutdown (then as it was: its
    thresholds back, the start-up objects unfrozen).

    Everything alive at start-up (imported modules, pydantic-ai's and SQLAlchemy's models) lives as
    long as the process: frozen, it stays out of the collector's full passes, which otherwise stall
    every stream (measured: ITL p99 at 100 concurrent 50 tokens/s streams 104 ms -> 49 ms). Each
    connection holds a few hundred tracked objects for its lifetime; with the default thresholds
    (700, 10, 10) opening thousands of them set off collection after collection that scanned them
    all again (3,000 connections pinging every 2 s: 2.6-4 s of GC pauses, pong p99 0.3-1.7 s).
    Young collections every 10,000 allocations and full ones rarer (SERVING_GC_THRESHOLDS): 0.4-0.5 s
    of pauses, pong p99 about 0.1 s on the same busy machine. The bench's bare stack serves under
    the same settings, so its floors measure the framework, not the collector's defaults."""
    gc.collect()
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(*SERVING_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


class Static(StaticFiles):
    """The files of `static/`, each with its media type by suffix, not by the host's mime.types
    (Debian's calls `.ts` a Qt Linguist file: `asp-client.d.ts` went out as text/vnd.trolltech.linguist).
    Files of other suffixes keep what Starlette guesses."""

    MEDIA_TYPES = {  # suffix -> Content-Type, the longest suffix first
        ".d.ts": "application/typescript; charset=utf-8",  # TypeScript declarations (as Deno serves them)
        ".js": "text/javascript; charset=utf-8",  # RFC 9239
        ".css": "text/css; charset=utf-8",
        ".svg": "image/svg+xml",
        ".html": "text/html; charset=utf-8",
    }

    def file_response(
        self,
        full_path: PathLike[str] | str,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        name = os.fspath(full_path)
        media_type = next(
            (media for suffix, media in self.MEDIA_TYPES.items() if name.endswith(suffix)), None
        )
        if media_type is not None and response.status_code != 304:
            response.headers["content-type"] = media_type
        return response


class DevLogin(BaseModel):
    user: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")


class ChatRoute:
    """The ASP endpoint as the app's innermost user middleware: a WebSocket at `path` goes straight to
    `chat`, past the router and FastAPI's per-request dependency solving, whose frames would
    otherwise stay alive for the whole connection (memory per connection, connect time)."""

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            root = scope.get("root_path", "")
            path = scope["path"]
            if (path[len(root) :] if root and path.startswith(root) else path) == self.path:
                await chat(WebSocket(scope, receive, send))
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None, *, dev_token_ttl_s: int | None = None) -> FastAPI:
    """The ASGI app: the ASP endpoint at settings.path, the demo page, /favicon.ico, /static, /healthz.

    `dev_token_ttl_s` (development mode only, see reference_server.server.DevMode) adds
    POST /dev/token, which mints tokens of that lifetime for any user name.
    """
    settings = settings or Settings()
    hub = Hub(settings)
    page = (
        (STATIC / "index.html")
        .read_text()
        .replace("<body>", f'<body data-dev-sign-in="{"on" if dev_token_ttl_s else "off"}">', 1)
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await hub.start()
        with collector_for_serving():
            try:
                yield
            finally:
                await hub.shutdown()

    app = FastAPI(title="ASP reference server", version=__version__, lifespan=lifespan)
    app.state.hub = hub
    app.add_middleware(ChatRoute, path=settings.path)

    @app.get("/", include_in_schema=False)
    async def demo_page() -> HTMLResponse:
        return HTMLResponse(page)

    icon = (STATIC / "favicon.svg").read_bytes()

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(icon, media_type="image/svg+xml", headers={"cache-control": "max-age=86400"})

    @app.get("/static/asp-protocol.js", include_in_schema=False)
    async def protocol_module() -> Response:
        return Response(PROTOCOL_MODULE, media_type="text/javascript")

    app.mount("/static", Static(directory=STATIC), name="static")  # after the generated module

    if dev_token_ttl_s:
        ttl = dev_token_ttl_s

        @app.post("/dev/token")
        async def dev_token(request: DevLogin) -> dict[str, str]:
            """Development sign-in (asp serve --dev only): a short-lived token for any name."""
            return {"token": mint(request.user, settings.secret, ttl_seconds=ttl)}

    @app.get("/healthz")
    async def health() -> dict[str, object]:
        return {"status": "ok", "connections": hub.registry.active, "sessions": len(hub.sessions.sessions)}

    return app
