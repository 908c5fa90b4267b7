"""asp-protocol.js, the constants browser clients need, generated from the spec at start-up."""

from __future__ import annotations

import json

from spec import PROTOCOL_VERSION, SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX
from spec.registry import close_codes, error_codes


def protocol_module_source() -> str:
    table = {
        code: {"name": entry.name, "reconnect": entry.reconnect, "min_delay_ms": entry.min_delay_ms}
        for code, entry in close_codes().items()
    }
    retryable = {code: entry["retryable"] for code, entry in error_codes().items()}
    return "\n".join(
        [
            "// Generated from spec/registry.yaml by the server; do not edit.",
            f"export const PROTOCOL_VERSION = {json.dumps(PROTOCOL_VERSION)};",
            f"export const SUBPROTOCOL = {json.dumps(SUBPROTOCOL)};",
            f"export const TOKEN_SUBPROTOCOL_PREFIX = {json.dumps(TOKEN_SUBPROTOCOL_PREFIX)};",
            f"export const CLOSE_CODES = {json.dumps(table, indent=2)};",
            f"export const RETRYABLE_ERRORS = {json.dumps(retryable, indent=2)};",
            "",
        ]
    )
