"""Every handshake gets an answer or a close promptly, and stalled ones cannot lock others out
(ASP-TRN-002): defect 5."""

from __future__ import annotations

import base64
import os
import resource
import socket
import time
from pathlib import Path

import pytest

from conformance.wire import AspClient
from tests.support.server import ServerProcess

HANDSHAKE_TIMEOUT_MS = 1000


def upgrade_request(path: str, extra_headers: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    ).encode()


def address(server: ServerProcess) -> tuple[str, int]:
    host, port = server.url.split("//")[1].split("/")[0].rsplit(":", 1)
    return host, int(port)


def answer_of(sock: socket.socket, within: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took (or the time limit)."""
    started = time.monotonic()
    sock.settimeout(within)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return received, time.monotonic() - started


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory):
    database = tmp_path_factory.mktemp("handshakes") / "asp.db"
    settings = {"ASP_HANDSHAKE_TIMEOUT_MS": str(HANDSHAKE_TIMEOUT_MS)}
    process = ServerProcess(database=database, settings=settings).start()
    yield process
    process.stop()


@pytest.mark.parametrize(
    "request_bytes,status",
    [
        (upgrade_request("/ws/chat?token=" + "a" * 9000), b" 414 "),
        (upgrade_request("/ws/chat?token=" + "a" * 17000), b" 4"),  # beyond h11's head limit too
        (
            upgrade_request("/ws/chat", "Sec-WebSocket-Protocol: asp.v1, asp.token." + "a" * 9000 + "\r\n"),
            b" 431 ",
        ),
    ],
    ids=["9 KB query token", "17 KB query token", "9 KB subprotocol token"],
)
def test_an_oversized_request_is_answered_at_once(quick: ServerProcess, request_bytes: bytes, status: bytes):
    with socket.create_connection(address(quick)) as sock:
        sock.sendall(request_bytes)
        received, took = answer_of(sock, 5)
    assert received.startswith(b"HTTP/1.1") and status in received.split(b"\r\n")[0], received[:200]
    assert took < 4


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET /ws/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpg"],
    ids=["nothing", "half a request"],
)
def test_a_stalled_handshake_is_closed_at_its_deadline(quick: ServerProcess, sent: bytes):
    with socket.create_connection(address(quick)) as sock:
        sock.sendall(sent)
        received, took = answer_of(sock, 10)
    assert received.startswith(b"HTTP/1.1 408")
    assert HANDSHAKE_TIMEOUT_MS / 1000 * 0.9 <= took < HANDSHAKE_TIMEOUT_MS / 1000 + 4


async def test_defect_5_eleven_hundred_stalled_connections_do_not_lock_out_a_normal_client(tmp_path: Path):
    """With 1,024 file descriptors (the issue's server), 1,100 silent connections at once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1400:
        pytest.skip(f"this test opens 1,100 sockets; the hard limit of open files is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1400), hard))
    server = ServerProcess(database=tmp_path / "asp.db", open_files=1024).start()
    stalled: list[socket.socket] = []
    try:
        for _ in range(1100):
            stalled.append(socket.create_connection(address(server)))
        started = time.monotonic()
        client = await AspClient.open(server.url, token=server.token("patient"), timeout=10)
        assert (await client.recv(10))["type"] == "session"
        assert time.monotonic() - started < 10
        await client.close()
        assert "Too many open files" not in server.logs
    finally:
        for sock in stalled:
            sock.close()
        server.stop()
