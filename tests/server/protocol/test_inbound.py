"""parse_frame's answers (protocol/inbound): JSON that orjson cannot represent is invalid_message."""

from __future__ import annotations

import pytest

from reference_server.protocol.inbound import Command, Rejection, parse_frame

MAX = 65_536


@pytest.mark.parametrize(
    "text,message_id",
    [
        ('{"type":"ping","id":"big","x-v":1e999999}', "big"),  # beyond a double
        ('{"type":"ping","id":"int","x-v":' + "9" * 5000 + "}", "int"),  # an integer beyond a double
        ('{"type":"resume","id":"r","session_id":"s","last_seq":1e400}', "r"),
        ('{"type":"message","content":"\\ud800 lone","id":"sur"}', "sur"),  # a lone surrogate escape
    ],
)
def test_valid_json_out_of_range_is_invalid_message_not_invalid_json(text: str, message_id: str):
    parsed = parse_frame(text, None, MAX)
    assert isinstance(parsed, Rejection)
    assert (parsed.code, parsed.message_id) == ("invalid_message", message_id)
    assert "out of range" in parsed.message


def test_text_outside_the_grammar_stays_invalid_json():
    for text in ('{"type":"ping","x-v":NaN}', '{"type":"ping"', "nope"):
        parsed = parse_frame(text, None, MAX)
        assert isinstance(parsed, Rejection) and parsed.code == "invalid_json", text


def test_an_out_of_range_value_nested_below_a_member_is_dropped_like_any_nested_value():
    parsed = parse_frame('{"type":"ping","id":"p","x-v":[1e999999]}', None, MAX)
    assert isinstance(parsed, Command) and parsed.data["x-v"] == []
