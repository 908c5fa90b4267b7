"""The HTTP side: the demo page, the client module, constants generated from the registry, dev sign-in."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import jwt
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


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/static/asp-client.d.ts", "application/typescript; charset=utf-8"),
        ("/static/asp-messages.d.ts", "application/typescript; charset=utf-8"),
        ("/static/asp-client.js", "text/javascript; charset=utf-8"),
        ("/static/demo.css", "text/css; charset=utf-8"),
    ],
)
def test_static_files_have_their_media_type_whatever_the_hosts_mime_types(
    server: ServerProcess, path: str, media_type: str
):
    """Not the host's /etc/mime.types: Debian's made `.d.ts` text/vnd.trolltech.linguist."""
    base = server.url.replace("ws://", "http://").removesuffix("/ws/chat")
    with urllib.request.urlopen(base + path, timeout=10) as response:
        assert response.status == 200 and response.headers["content-type"] == media_type


def test_the_protocol_module_carries_the_registry_close_codes(server: ServerProcess):
    status, module = http(server, "/static/asp-protocol.js")
    assert status == 200
    table = json.loads(module.split("export const CLOSE_CODES = ")[1].split(";\n")[0])
    assert {int(code): entry["reconnect"] for code, entry in table.items()} == {
        code: entry.reconnect for code, entry in close_codes().items()
    }


def test_dev_sign_in_is_off_by_default(server: ServerProcess):
    assert http(server, "/dev/token", {"user": "x"})[0] in (404, 405)
    assert 'data-dev-sign-in="off"' in http(server, "/")[1]


@pytest.mark.parametrize("module,args", [("reference_server", ()), ("asp_cli.main", ("serve",))])
def test_defect_7_no_setting_turns_dev_sign_in_on(tmp_path, module: str, args: tuple[str, ...]):
    """Only `asp serve --dev` has the development sign-in; no variable can switch it on."""
    variables = {"ASP_DEV_LOGIN": "true", "ASP_DEV": "true", "ASP_DEV_MODE": "true"}
    server = ServerProcess(database=tmp_path / "a.db", settings=variables, module=module, args=args).start()
    try:
        assert http(server, "/dev/token", {"user": "alice"})[0] in (404, 405)
        assert 'data-dev-sign-in="off"' in http(server, "/")[1]
        assert "Development token" not in server.logs and "eyJ" not in server.logs  # defect 6
    finally:
        server.stop()


@pytest.mark.parametrize("user,ok", [("carol", True), ("bad name!", False), ("", False)])
def test_dev_sign_in_in_dev_mode_mints_short_lived_tokens_for_valid_names(make_server, user: str, ok: bool):
    server = make_server(dev=True)
    status, body = http(server, "/dev/token", {"user": user})
    if ok:
        token = json.loads(body)["token"]
        assert status == 200 and verify(token, SECRET) == user
        claims = jwt.decode(token, SECRET, algorithms=["HS256"])
        assert claims["exp"] - claims["iat"] <= 3600  # short-lived, not the 24 h of before
        assert 'data-dev-sign-in="on"' in http(server, "/")[1]
    else:
        assert status == 422
