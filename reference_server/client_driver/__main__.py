"""`python -m reference_server.client_driver {node,chromium} [--patch FILE]`: asp-client.js behind
the client driver contract (spec/CLIENT-DRIVER.md), for `asp check-client --command`.

Exit 2 with one line on a usage error (unknown runtime, a bad patch file, no node or chromium,
no Playwright for chromium).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from reference_server.client_driver.bundle import PatchError, bundle, load_patches, materialise


def _node_command(directory: Path) -> list[str]:
    node = shutil.which("node")
    if node is None:
        raise PatchError("node is not on PATH")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    major = int(version.strip().lstrip("v").split(".")[0])
    flags = ["--experimental-websocket"] if major < 22 else []  # a global WebSocket from Node 22 on
    return [node, *flags, str(directory / "node.mjs")]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reference_server.client_driver",
        description="Run asp-client.js behind the ASP client driver contract (spec/CLIENT-DRIVER.md).",
    )
    parser.add_argument("runtime", choices=["node", "chromium"])
    parser.add_argument("--patch", type=Path, help="JSON list of find/replace pairs applied to asp-client.js")
    args = parser.parse_args(argv)
    try:
        files = bundle(load_patches(args.patch) if args.patch else [])
        if args.runtime == "chromium":
            try:
                from reference_server.client_driver.chromium import run
            except ModuleNotFoundError as missing:
                if missing.name != "playwright" and not (missing.name or "").startswith("playwright."):
                    raise
                raise PatchError(
                    "the chromium driver needs Playwright, which the dev extra installs "
                    "(pip install -e '.[dev]', as make test does)"
                ) from None

            return run(files)
        command = _node_command(materialise(files))
    except PatchError as problem:
        print(f"client_driver: error: {problem}", file=sys.stderr)
        return 2
    os.execv(command[0], command)  # node takes over stdin and stdout


if __name__ == "__main__":
    sys.exit(main())
