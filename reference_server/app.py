"""The FastAPI application: the ASP endpoint, a health probe, and the lifespan that owns the hub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from reference_server import __version__
from reference_server.config import Settings
from reference_server.endpoint import chat
from reference_server.hub import Hub


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    hub = Hub(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.shutdown()

    app = FastAPI(title="ASP reference server", version=__version__, lifespan=lifespan)
    app.state.hub = hub
    app.add_api_websocket_route(settings.path, chat)

    @app.get("/healthz")
    async def health() -> dict[str, object]:
        return {"status": "ok", "connections": hub.registry.active, "sessions": len(hub.sessions.sessions)}

    return app
