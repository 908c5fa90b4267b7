"""The HTTP side: the demo page, the client module, constants generated from the registry, dev sign-in."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from reference_server.auth import verify
from spec.registry import close_codes
from tests.support.server import SECRET, ServerProcess


def http(server: ServerProcess, path: str, body: dict | None = None) -> tuple[int, str]:
    base = server.url.replace("ws://", "http://").removesuffix("/ws/chat")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_demo_page_and_the_client_module_are_served(server: ServerProcess):
    status, page = http(server, "/")
    assert status == 200 and "ASP demo chat" in page
    status, module = http(server, "/static/asp-client.js")
    assert status == 200 and "export class AspClient" in module
    status, types = http(server, "/static/asp-messages.d.ts")
    assert status == 200 and "export type ServerEvent" in types


def test_the_protocol_module_carries_the_registry_close_codes(server: ServerProcess):
    status, module = http(server, "/static/asp-protocol.js")
    assert status == 200
    table = json.loads(module.split("export const CLOSE_CODES = ")[1].split(";\n")[0])
    assert {int(code): entry["reconnect"] for code, entry in table.items()} == {
        code: entry.reconnect for code, entry in close_codes().items()
    }


def test_dev_sign_in_is_off_by_default(server: ServerProcess):
    assert http(server, "/dev/token", {"user": "x"})[0] in (404, 405)


@pytest.mark.parametrize("user,ok", [("carol", True), ("bad name!", False), ("", False)])
def test_dev_sign_in_when_enabled_mints_tokens_for_valid_names(make_server, user: str, ok: bool):
    server = make_server(dev_login="true")
    status, body = http(server, "/dev/token", {"user": user})
    if ok:
        assert status == 200 and verify(json.loads(body)["token"], SECRET) == user
    else:
        assert status == 422
