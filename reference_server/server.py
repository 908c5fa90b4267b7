"""`asp serve`: uvicorn tuned for token streams, on a socket bound before start so port 0 works."""

from __future__ import annotations

import logging.config
import socket
import sys
from typing import TextIO

import uvicorn
from uvicorn._types import ASGIApplication

from reference_server.app import create_app
from reference_server.auth import mint
from reference_server.config import Settings
from reference_server.logs import logging_config

DEV_USER = "dev"


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted sockets only then, and without it
    # Nagle's algorithm holds the second small frame of a reply for the peer's delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    if port:
        # A fixed port may be rebound while the old one is in TIME_WAIT. Never for port 0: Linux lets
        # SO_REUSEADDR sockets share a port until one listens, so two servers starting at once could
        # be handed the same ephemeral port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # listening from now on: the port is ours before the app starts
    sock.set_inheritable(True)
    return sock


def uvicorn_config(settings: Settings, app: ASGIApplication | None = None) -> uvicorn.Config:
    heartbeat_s = settings.heartbeat_interval_ms / 1000
    return uvicorn.Config(
        app or create_app(settings),
        ws="websockets-sansio",  # measured fastest (field notes); ping support included
        ws_max_size=settings.max_message_bytes,  # larger frames close with 1009 (ASP-LIM-003)
        ws_per_message_deflate=False,
        ws_ping_interval=heartbeat_s,  # ASP-HB-001
        ws_ping_timeout=heartbeat_s,
        log_config=logging_config(json_lines=settings.log_json, access_log=settings.access_log),
        access_log=settings.access_log,
        timeout_graceful_shutdown=max(1, settings.shutdown_grace_ms // 1000 + 1),
        lifespan="on",
    )


def announce(settings: Settings, port: int, out: TextIO) -> None:
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    print(f"ASP reference server listening on ws://{host}:{port}{settings.path}", file=out)
    print(f"Demo page: http://{host}:{port}/", file=out)
    if settings.generated_secret:
        print(
            "No ASP_JWT_SECRET set: generated a secret for this run; tokens die with the process.", file=out
        )
    token = mint(DEV_USER, settings.secret, ttl_seconds=24 * 3600)
    print(f"Development token (user {DEV_USER!r}, 24 h): {token}", file=out)
    print(f"Connect: ws://{host}:{port}{settings.path}?token=<token>", file=out)
    out.flush()


def serve(settings: Settings, out: TextIO = sys.stdout, app: ASGIApplication | None = None) -> None:
    """Run until SIGINT/SIGTERM. `app` wraps or replaces the reference app (tests use it for faults)."""
    logging.config.dictConfig(logging_config(json_lines=settings.log_json, access_log=settings.access_log))
    sock = bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    config = uvicorn_config(settings, app)
    announce(settings, port, out)
    uvicorn.Server(config).run(sockets=[sock])
