"""The conformance cases, one module per spec section; importing this package registers them all."""

from conformance.cases import (  # noqa: F401
    auth,
    duplicates,
    errors,
    handshake,
    heartbeats,
    history,
    limits,
    resume,
    runs,
    session,
    tools,
)
