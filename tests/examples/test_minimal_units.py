"""The minimal server's pure parts, without sockets: handshake reading, fixtures, rate, sizes, tokens."""

from __future__ import annotations

import pytest

from examples.minimal_server import auth, inbound, sizing
from examples.minimal_server.config import ConfigError, load
from examples.minimal_server.handshake import Offer, select_subprotocol
from examples.minimal_server.model import CallTool, Fail, Say, answer, fixture
from examples.minimal_server.ratelimit import RateLimit
from tests.examples.conftest import mint
from tests.support.server import SECRET


def test_the_subprotocol_token_counts_and_the_query_token_is_then_ignored():
    offer = Offer.read("/ws/chat?token=garbage&conversation_id=", ["asp.v1", "asp.token.good"])
    assert (offer.token, offer.conversation_id, offer.path) == ("good", "", "/ws/chat")
    assert Offer.read("/ws/chat?token=q", ["asp.v1"]).token == "q"
    assert Offer.read("/ws/chat", []).conversation_id is None


@pytest.mark.parametrize(
    ("offered", "selected", "supported"),
    [
        (["asp.v1"], "asp.v1", True),
        (["asp.v2", "asp.v1"], "asp.v1", True),
        (["asp.v99", "asp.v98"], "asp.v99", False),  # ASP-VER-006: the first version offered
        (["asp.token.abc"], None, True),  # no asp.v*: version 1, nothing selected (ASP-AUTH-010)
        ([], None, True),
    ],
)
def test_subprotocol_selection(offered: list[str], selected: str | None, supported: bool):
    offer = Offer.read("/ws/chat", offered)
    assert select_subprotocol(offer) == selected
    assert offer.version_supported is supported


def test_fixtures_are_exactly_the_registry_forms():
    empty = fixture("asp-fixture:text 0", [], 0)  # a run with no text
    assert empty is not None and isinstance(empty[0], Say) and list(empty[0].tokens) == []
    slow = fixture("asp-fixture:slow 3 25", [], 5)
    assert slow is not None and isinstance(slow[0], Say) and slow[0].pace_ms == 25
    assert list(slow[0].tokens) == ["t0 ", "t1 ", "t2 "]
    bulk = fixture("asp-fixture:bulk 2 4", [], 5)
    assert bulk is not None and isinstance(bulk[0], Say) and bulk[0].pace_ms is None
    assert list(bulk[0].tokens) == ["bbb ", "bbb "]
    tool = [CallTool("add", {"a": 2, "b": 3}), Say(["The ", "sum ", "is ", "5."], 0)]
    assert fixture("asp-fixture:tool", [], 0) == tool
    assert fixture("asp-fixture:slow_tool 7", [], 0) == [CallTool("sleep", {"ms": 7}), Say(["Done."], 0)]
    steps = fixture("asp-fixture:model_error", [], 0)
    assert steps is not None and isinstance(steps[-1], Fail)
    recall = fixture("asp-fixture:recall", ["a", "b"], 0)
    assert recall == [Say(["recall:a|b"], 0)]
    for not_one in [
        "asp-fixture:bulk 3 0",  # bulk N 0 is not a fixture
        "asp-fixture:bulk 0 4",
        "asp-fixture:text 100001",
        "asp-fixture:slow 2 60001",
        "asp-fixture:text -1",
        "asp-fixture:text 1 2",
        "asp-fixture:text  1",
        "asp-fixture:text \u0661",  # not ASCII digits
        "asp-fixture:tool 1",
        "asp-fixture:nothing",
    ]:
        assert fixture(not_one, [], 0) is None, not_one
        echoed = answer(not_one, [], fixtures=True, pace_ms=0)
        assert "".join(echoed[0].tokens) == "You said: " + not_one  # type: ignore[union-attr]


def test_fixtures_are_ordinary_messages_when_the_capability_is_off():
    steps = answer("asp-fixture:tool", [], fixtures=False, pace_ms=0)
    assert steps == [Say(["You ", "said: ", "asp-fixture:tool"], 0)]


def test_the_rate_limit_is_a_sliding_window_with_an_exact_retry_after():
    rate = RateLimit(messages=2, window_ms=1000)
    assert rate.retry_after_ms("u", 10.0) is None
    rate.record("u", 10.0)
    rate.record("u", 10.25)
    assert rate.retry_after_ms("v", 10.5) is None  # per user
    assert rate.retry_after_ms("u", 10.5) == 500  # until the run at 10.0 leaves the window
    assert rate.retry_after_ms("u", 11.0) is None  # it left: a message sent after retry_after is served
    rate.record("u", 11.0)
    assert rate.retry_after_ms("u", 11.125) == 125


def test_split_text_never_cuts_and_every_piece_fits():
    text = "é" * 50 + "a" * 100 + "\n" * 10
    pieces = sizing.split_text(text, 40)
    assert "".join(pieces) == text
    assert all(sizing.size(p) - 2 <= 40 for p in pieces)


def test_history_keeps_the_newest_entries_that_fit_and_counts_the_rest():
    entries = [{"role": "user", "content": f"{n}" * 30_000, "run_id": "r"} for n in range(5)]
    event = {"type": "history", "conversation_id": "c", "messages": entries}
    fitted = sizing.fit_history(event, 65_536)
    assert fitted["messages"] == entries[-2:]
    assert (fitted["truncated"], fitted["omitted"]) == (True, 3)
    assert sizing.size(fitted) + sizing.RESERVE <= 65_536


def test_an_entry_too_large_alone_is_shortened_and_marked():
    big_tool = {
        "role": "tool",
        "tool_call_id": "c1",
        "name": "t",
        "arguments": {"x": "a" * 70_000},
        "content": {"y": "b" * 70_000},
        "is_error": False,
        "run_id": "r",
    }
    fitted = sizing.fit_history({"type": "history", "conversation_id": "c", "messages": [big_tool]}, 65_536)
    (entry,) = fitted["messages"]
    assert entry["truncated"] is True and entry["arguments"] == {}
    assert isinstance(entry["content"], str) and entry["content"].startswith('{"y":"bbb')
    assert "omitted" not in fitted
    assert sizing.size(fitted) + sizing.RESERVE <= 65_536


def test_an_entry_too_large_alone_behind_newer_ones_is_shortened_not_left_out():
    old = {"role": "user", "content": "first", "message_id": "m", "run_id": "r"}
    big = {"role": "assistant", "content": "ab" * 40_000, "run_id": "r"}
    newer = [
        {"role": "user", "content": "again", "run_id": "s"},
        {"role": "assistant", "content": "ok", "run_id": "s"},
    ]
    event = {"type": "history", "conversation_id": "c", "messages": [old, big, *newer]}
    fitted = sizing.fit_history(event, 65_536)
    shortened, *rest = fitted["messages"]
    assert rest == newer and (fitted["truncated"], fitted["omitted"]) == (True, 1)
    assert shortened["truncated"] is True and big["content"].startswith(shortened["content"])
    assert len(shortened["content"]) > 60_000
    assert sizing.size(fitted) + sizing.RESERVE <= 65_536


def test_tool_events_too_large_are_shortened():
    call = {"type": "tool_call", "run_id": "r", "tool_call_id": "c", "name": "t"}
    call["arguments"] = {"a": "x" * 70_000}
    assert sizing.fit_tool_call(call, 65_536) == {**call, "arguments": {}, "truncated": True}
    result = {"type": "tool_result", "run_id": "r", "tool_call_id": "c", "content": "y" * 70_000}
    result["is_error"] = False
    fitted = sizing.fit_tool_result(result, 65_536)
    assert fitted["truncated"] is True and set(fitted["content"]) == {"y"}
    assert sizing.size(fitted) + sizing.RESERVE <= 65_536


@pytest.mark.parametrize(
    ("token", "user"),
    [
        (mint("alice"), "alice"),
        (mint(None), None),
        (mint(""), None),
        (mint("a" * 257), None),  # longer than session.user.id allows
        (mint("alice", sub=42), None),  # not a string
        (mint("alice", nbf=2**40), None),  # not yet valid (ASP-AUTH-012)
        (mint("alice", ttl=-10), None),
        (mint("alice", exp=None), None),  # this server's policy: exp required
        (mint("alice", algorithm="HS512"), None),  # an alg the server is not configured for
        (mint("alice", key="another-secret-of-the-same-length-0123456789abcdef"), None),
        ("not.a.jwt", None),
        (None, None),
    ],
)
def test_tokens(token: str | None, user: str | None):
    assert auth.user_of(token, SECRET) == user


def test_configuration_errors_name_the_variable():
    with pytest.raises(ConfigError, match="ASP_JWT_SECRET"):
        load({})
    with pytest.raises(ConfigError, match="ASP_MAX_EVENT_BYTES must be at least 65536"):
        load({"ASP_JWT_SECRET": "s", "ASP_MAX_EVENT_BYTES": "1000"})
    with pytest.raises(ConfigError, match="ASP_FIXTURES must be true or false"):
        load({"ASP_JWT_SECRET": "s", "ASP_FIXTURES": "maybe"})
    config = load({"ASP_JWT_SECRET": "s", "ASP_PORT": "0", "ASP_MINIMAL_SESSION": "yes"})
    assert (config.port, config.minimal_session, config.path) == (0, True, "/ws/chat")


@pytest.mark.parametrize(
    ("frame", "code", "message_id"),
    [
        (b"\x00\x01", "unsupported_frame", None),
        ("not json", "invalid_json", None),
        ("[1, 2]", "invalid_json", None),
        ('{"type": "ping", "x-n": NaN}', "invalid_json", None),  # NaN is not JSON
        ('{"type": "subscribe", "id": "u1"}', "unknown_type", "u1"),
        ('{"content": "no type", "id": "u2"}', "unknown_type", "u2"),
        ('{"type": "message", "id": "m1", "content": ""}', "invalid_message", "m1"),
        ('{"type": "ping", "id": "p1\\n"}', "invalid_message", None),  # ECMA-262: $ is the very end
        ('{"type": "ping", "id": "bad id"}', "invalid_message", None),
    ],
)
def test_client_frames_that_get_an_error(frame: str | bytes, code: str, message_id: str | None):
    refusal = inbound.read(frame)
    assert isinstance(refusal, inbound.Refusal)
    assert (refusal.code, refusal.message_id) == (code, message_id)


def test_valid_client_messages_pass_through():
    assert inbound.read('{"type": "ping", "id": "p.1:x-y_z"}') == {"type": "ping", "id": "p.1:x-y_z"}
    resume = '{"type": "resume", "session_id": "ses_1", "last_seq": 0, "x-note": 1}'
    assert inbound.read(resume) == {"type": "resume", "session_id": "ses_1", "last_seq": 0, "x-note": 1}
