"""The Chromium driver: asp-client.js in a headless page of Debian's Chromium, through Playwright.

The page and its modules are served from memory by a small HTTP server on 127.0.0.1 (a page of
a loopback origin, as a server's own demo page is; Chromium blocks pages of other origins from
loopback sockets), so the handshake carries an Origin header like any browser's. Standard input
lines go to the page with `page.evaluate`; the page's records come back through an exposed
function to standard output.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from playwright.async_api import Page, async_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
PAGE = """<!doctype html><meta charset="utf-8"><title>asp-client.js driver</title>
<script type="module">
import { AspClient } from "./asp-client.js";
import { drive } from "./driver.js";
window.aspDriverStart = (url, token) => {
  const client = new AspClient({ url, token });
  window.aspDriver = drive(client, (record) => window.aspDriverEmit(JSON.stringify(record)));
  client.connect();
};
</script>"""


def run(files: dict[str, str]) -> int:
    """Drive the page until standard input ends. Returns the exit status (2: no chromium)."""
    executable = shutil.which("chromium")
    if executable is None:
        print("client_driver: error: Debian's chromium is not on PATH", file=sys.stderr)
        return 2
    return asyncio.run(_drive(executable, {**files, "index.html": PAGE}))


async def _drive(executable: str, files: dict[str, str]) -> int:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    with _serving(files) as origin:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=executable, headless=True, args=CHROMIUM_ARGS
            )
            page = await browser.new_page()
            await page.expose_function("aspDriverEmit", _emit)
            page.on("console", lambda message: print(f"page: {message.text}", file=sys.stderr, flush=True))
            await page.goto(f"{origin}/index.html")
            await page.wait_for_function("() => typeof window.aspDriverStart === 'function'")
            await page.evaluate(
                "([url, token]) => window.aspDriverStart(url, token)",
                [os.environ.get("ASP_URL", ""), os.environ.get("ASP_TOKEN", "")],
            )
            await _pump(stdin, page)
            await page.evaluate("() => window.aspDriver.end()")
            await browser.close()
    return 0


async def _pump(stdin: asyncio.StreamReader, page: Page) -> None:
    while line := await stdin.readline():
        if line.strip():
            await page.evaluate("(line) => window.aspDriver.input(line)", line.decode("utf-8"))


@contextmanager
def _serving(files: dict[str, str]) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 (free port) serving `files`; yields its origin."""

    class Files(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.lstrip("/").split("?")[0]
            body = files.get(name)
            if body is None:
                self.send_error(404)
                return
            payload = body.encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html" if name.endswith(".html") else "text/javascript")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
