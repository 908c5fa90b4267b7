"""ASP v1: the protocol's canonical files and the sans-I/O code that executes them.

The JSON Schemas, the requirements catalog, the registries and the lifecycle table in this
folder are the protocol. The modules here only load and execute them; they hold no socket.
"""

from pathlib import Path

SPEC_DIR = Path(__file__).resolve().parent
SCHEMA_DIR = SPEC_DIR / "schema"
EXAMPLES_DIR = SPEC_DIR / "examples"
PROTOCOL_VERSION = "1.1"
SUBPROTOCOL = "asp.v1"
TOKEN_SUBPROTOCOL_PREFIX = "asp.token."

__all__ = [
    "EXAMPLES_DIR",
    "PROTOCOL_VERSION",
    "SCHEMA_DIR",
    "SPEC_DIR",
    "SUBPROTOCOL",
    "TOKEN_SUBPROTOCOL_PREFIX",
]
