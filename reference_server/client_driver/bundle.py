"""The files a driver loads: asp-client.js (optionally patched), its generated protocol module,
the shared driver core and the Node entry point."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from reference_server.protocol.browser import protocol_module_source

HERE = Path(__file__).resolve().parent
STATIC = HERE.parent / "static"


class PatchError(ValueError):
    """A patch file that is unreadable, malformed, or whose `find` text is not in asp-client.js once."""


def load_patches(path: Path) -> list[tuple[str, str]]:
    """A patch file: a JSON list of {"find": TEXT, "replace": TEXT}. Raises PatchError."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PatchError(f"cannot read patch file {path}: {exc}") from None
    if not isinstance(document, list) or not all(
        isinstance(p, dict) and isinstance(p.get("find"), str) and isinstance(p.get("replace"), str)
        for p in document
    ):
        raise PatchError(f'{path}: expected a JSON list of {{"find": ..., "replace": ...}}')
    return [(p["find"], p["replace"]) for p in document]


def patched_client(patches: list[tuple[str, str]]) -> str:
    """asp-client.js with each `find` replaced; each must occur exactly once (a stale patch fails
    loudly instead of silently testing the unpatched client). Raises PatchError."""
    source = (STATIC / "asp-client.js").read_text(encoding="utf-8")
    for find, replace in patches:
        count = source.count(find)
        if count != 1:
            raise PatchError(f"patch text occurs {count} times in asp-client.js, not once: {find[:80]!r}")
        source = source.replace(find, replace)
    return source


def bundle(patches: list[tuple[str, str]]) -> dict[str, str]:
    """File name -> content of everything a driver page or process imports."""
    return {
        "asp-client.js": patched_client(patches),
        "asp-protocol.js": protocol_module_source(),
        "driver.js": (HERE / "driver.js").read_text(encoding="utf-8"),
        "node.mjs": (HERE / "node.mjs").read_text(encoding="utf-8"),
    }


def materialise(files: dict[str, str]) -> Path:
    """Write the files to a directory named by their content hash under the temp directory (so
    concurrent drivers share it safely and nothing needs cleaning up) and return it."""
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:20]
    target = Path(tempfile.gettempdir()) / f"asp-client-driver-{digest}"
    target.mkdir(exist_ok=True)
    for name, content in files.items():
        final = target / name
        if final.exists() and final.read_text(encoding="utf-8") == content:
            continue
        partial = target / f".{name}.{os.getpid()}"
        partial.write_text(content, encoding="utf-8")
        os.replace(partial, final)
    return target
