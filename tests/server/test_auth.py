"""Authentication: both token carriers work; each bad token class is refused with 4001 after accept."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from conformance.wire import AspClient
from tests.support.server import SECRET, ServerProcess


def forge(claims: dict[str, object], key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def alg_none(claims: dict[str, object]) -> str:
    return jwt.encode(claims, key=None, algorithm="none")  # type: ignore[arg-type]


NOW = int(time.time())
BAD_TOKENS = {
    "garbage": "not-a-token",
    "wrong-secret": forge(
        {"sub": "mallory", "exp": NOW + 86_400}, key="another-secret-of-enough-length-000000"
    ),
    "alg-none": alg_none({"sub": "mallory", "exp": NOW + 86_400}),
    "expired": forge({"sub": "alice", "exp": NOW - 60}),
    "no-subject": forge({"exp": NOW + 86_400}),
    "empty-subject": forge({"sub": "", "exp": NOW + 86_400}),
    "no-expiry": forge({"sub": "alice"}),
    "other-algorithm": forge({"sub": "alice", "exp": NOW + 86_400}, algorithm="HS512"),
    "not-yet-valid": forge({"sub": "alice", "exp": NOW + 86_400, "nbf": NOW + 43_200}),  # ASP-AUTH-012
    "subject-not-a-string": forge({"sub": 42, "exp": NOW + 86_400}),
    "subject-too-long": forge({"sub": "a" * 257, "exp": NOW + 86_400}),
}


async def test_token_in_the_query_parameter_authenticates(server: ServerProcess, connect):
    client = await connect(server, user="auth-q")
    assert (await client.expect("session"))["user"]["id"] == "auth-q"


async def test_token_in_the_subprotocol_authenticates_and_is_never_selected(server: ServerProcess, connect):
    client = await connect(server, user="auth-s", token_in="subprotocol")
    assert (await client.expect("session"))["user"]["id"] == "auth-s"
    assert client.subprotocol == "asp.v1"


async def test_bearer_header_authenticates_non_browser_clients(server: ServerProcess, connect):
    token = server.token("auth-h")
    client = await connect(server, user=None, token=None, headers={"Authorization": f"Bearer {token}"})
    assert (await client.expect("session"))["user"]["id"] == "auth-h"


@pytest.mark.parametrize("kind", [None, *BAD_TOKENS])
async def test_bad_token_is_accepted_then_closed_4001_with_no_event(server: ServerProcess, kind: str | None):
    token = BAD_TOKENS[kind] if kind else None
    client = await AspClient.open(server.url, token=token)
    assert await client.wait_closed(5) == 4001
    assert client.events == []
    assert token is None or token not in client.close_reason


@pytest.mark.parametrize("offered", [["asp.v9"], ["asp.v9", "asp.v7"], ["x-other", "asp.v9"]])
async def test_defect_14_an_unsupported_version_selects_the_first_offered_then_closes_4000(
    server: ServerProcess, offered: list[str]
):
    """ASP-VER-006: selecting an offered subprotocol lets a browser complete the handshake."""
    client = await AspClient.open(server.url, token=server.token("auth-v"), subprotocols=offered)
    assert client.subprotocol == "asp.v9"
    assert await client.wait_closed(5) == 4000
    assert client.events == []


@pytest.mark.parametrize(
    "offered,token,code",
    [
        (["asp.v9"], "bad", 4000),  # version before authentication (ASP-TRN-005)
        (["asp.v1"], "bad", 4001),
    ],
)
async def test_refusal_precedence(server: ServerProcess, offered: list[str], token: str, code: int):
    client = await AspClient.open(server.url, token=token, subprotocols=offered)
    assert await client.wait_closed(5) == code


async def test_a_valid_subprotocol_token_wins_over_a_garbage_query_token(server: ServerProcess):
    client = await AspClient.open(
        server.url + "?token=garbage",
        token=server.token("auth-both"),
        token_in="subprotocol",
    )
    assert (await client.expect("session"))["user"]["id"] == "auth-both"
    await client.close()


async def test_no_version_offered_means_version_1(server: ServerProcess, connect):
    client = await connect(server, user="auth-nv", subprotocols=[])
    assert client.subprotocol is None
    assert (await client.expect("session"))["protocol_version"].startswith("1.")


async def test_tokens_never_reach_the_logs(server: ServerProcess, connect):
    query_token = server.token("auth-log-q")
    protocol_token = server.token("auth-log-s")
    await (await connect(server, token=query_token)).expect("session")
    await (await connect(server, token=protocol_token, token_in="subprotocol")).expect("session")
    refused = await AspClient.open(server.url, token=BAD_TOKENS["wrong-secret"])
    await refused.wait_closed(5)
    await asyncio.sleep(0.3)
    logs = server.logs
    assert "WebSocket /ws/chat" in logs, "the access log line must be there for this test to mean anything"
    assert "token=[REDACTED]" in logs
    for token in (query_token, protocol_token, BAD_TOKENS["wrong-secret"]):
        assert token not in logs
        assert token.split(".")[2] not in logs  # not even the signature
