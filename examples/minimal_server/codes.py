"""The protocol's names and numbers, read from the published registry (spec/registry.yaml).

Close codes and error codes are looked up by their registry names, so this server never writes
a number the registry owns. An implementer in another language would generate these constants
from the same file.
"""

from __future__ import annotations

from typing import Final

from spec.registry import close_code, error_codes

PROTOCOL_VERSION: Final = "1.1"  # the version this server implements (ASP-VER-004)
SUBPROTOCOL: Final = "asp.v1"  # the only major version spoken (ASP-VER-001)
VERSION_PREFIX: Final = "asp.v"
TOKEN_PREFIX: Final = "asp.token."  # a bearer token carried as a subprotocol (ASP-AUTH-002)

# Close codes this server sends (ASP-CLS-001). 1002, 1007 and 1009 are sent by the websockets
# library itself, which fails a connection on a broken frame, on invalid UTF-8 (ASP-TRN-004) and
# on a message larger than max_size (ASP-LIM-010) exactly as RFC 6455 says.
GOING_AWAY: Final = close_code("going_away")
UNSUPPORTED_VERSION: Final = close_code("unsupported_version")
UNAUTHORIZED: Final = close_code("unauthorized")
TRY_AGAIN_LATER: Final = close_code("try_again_later")
SUPERSEDED: Final = close_code("superseded")
IDLE_TIMEOUT: Final = close_code("idle_timeout")
SLOW_CONSUMER: Final = close_code("slow_consumer")
HEARTBEAT_TIMEOUT: Final = close_code("heartbeat_timeout")


def retryable(code: str) -> bool:
    """The registry's `retryable` for an error code (ASP-ERR-001)."""
    return bool(error_codes()[code]["retryable"])
