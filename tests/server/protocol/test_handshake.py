"""Handshake decisions as tables: version selection, refusal precedence, token carriers, binding."""

from __future__ import annotations

import pytest

from reference_server.auth import AuthError
from reference_server.protocol.handshake import Binding, binding_of, decide, select_subprotocol, token_of
from spec.registry import close_code


@pytest.mark.parametrize(
    "offered,selected,spoken",
    [
        ([], None, True),  # no asp.v* means version 1 (ASP-VER-002)
        (["asp.token.T"], None, True),  # a token alone is no version offer (ASP-AUTH-010)
        (["asp.v1"], "asp.v1", True),
        (["asp.v2", "asp.v1"], "asp.v1", True),
        (["asp.v2"], "asp.v2", False),  # defect 14: the first asp.v* is selected, then 4000 (ASP-VER-006)
        (["asp.v3", "asp.token.T", "asp.v2"], "asp.v3", False),
        (["graphql-ws", "asp.v9"], "asp.v9", False),
    ],
)
def test_the_subprotocol_selected(offered: list[str], selected: str | None, spoken: bool):
    assert select_subprotocol(offered) == (selected, spoken)


def verifier(valid: set[str], calls: list[str | None]):
    def verify(token: str | None) -> str:
        calls.append(token)
        if token in valid:
            return f"user-of-{token}"
        raise AuthError("bad token")

    return verify


@pytest.mark.parametrize(
    "offered,query,code",
    [
        (["asp.v7", "asp.token.bad"], {}, "unsupported_version"),  # version before authentication
        (["asp.v7", "asp.token.good"], {}, "unsupported_version"),
        (["asp.v1", "asp.token.bad"], {}, "unauthorized"),
        (["asp.v1"], {"token": "bad"}, "unauthorized"),
        (["asp.v1"], {}, "unauthorized"),
        (["asp.v1", "asp.token.good"], {"token": "garbage"}, ""),  # the subprotocol token counts
        (["asp.v1"], {"token": "good"}, ""),
    ],
)
def test_refusal_precedence_version_then_authentication(offered: list[str], query: dict[str, str], code: str):
    calls: list[str | None] = []
    decision = decide(offered, query, {}, verifier({"good"}, calls))
    if code:
        assert decision.refusal is not None and decision.refusal.code == close_code(code)  # type: ignore[arg-type]
        assert decision.user_id is None
    else:
        assert decision.refusal is None and decision.user_id == "user-of-good"
    if code == "unsupported_version":
        assert calls == []  # the version refusal never looks at the token
        assert decision.subprotocol == "asp.v7"


def test_the_token_that_counts():
    assert token_of({"token": "q"}, ["asp.v1", "asp.token.s"], {"authorization": "Bearer h"}) == "s"
    assert token_of({"token": "q"}, ["asp.v1"], {"authorization": "Bearer h"}) == "q"
    assert token_of({}, [], {"authorization": "Bearer h"}) == "h"
    assert token_of({}, [], {"authorization": "Basic h"}) is None


@pytest.mark.parametrize(
    "requested,binding",
    [
        (None, Binding.LATEST),  # ASP-SES-009
        ("new", Binding.NEW),  # ASP-SES-007
        ("New", Binding.NAMED),  # only the exact value new is new
        ("conv_123", Binding.NAMED),  # ASP-SES-008
        ("", Binding.UNKNOWN),  # ASP-SES-010
        ("bad id!", Binding.UNKNOWN),
        ("conv_1\n", Binding.UNKNOWN),
        ("x" * 129, Binding.UNKNOWN),
    ],
)
def test_how_conversation_id_binds(requested: str | None, binding: Binding):
    assert binding_of(requested) is binding
