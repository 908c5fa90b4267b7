"""Which requirements apply to a server: those of the protocol version it announces or earlier.

A requirement carries `since` (the minor version that introduced it, "1.0" when absent; see
spec/catalog.py). A server announcing 1.0 is never judged by a requirement introduced in 1.1: a
case citing only newer requirements is not applicable, and a finding on a newer requirement (a
case's or the oracle's) is not made. A case mixing old and new requirements checks the new ones
only when the server announces their version or later.
"""

from __future__ import annotations

from spec.catalog import requirement


def since(requirement_id: str) -> str:
    """The protocol version that introduced a requirement."""
    return requirement(requirement_id).since


def applies(requirement_id: str, protocol_version: str) -> bool:
    """Whether a server announcing `protocol_version` (MAJOR.MINOR) is bound by the requirement.

    Raises ValueError when `protocol_version` is not MAJOR.MINOR (ServerTerms never hands one out).
    """
    return requirement(requirement_id).applies_to(protocol_version)


def newer_than(requirement_ids: list[str] | tuple[str, ...], protocol_version: str) -> list[str]:
    """The requirements of the list introduced after `protocol_version`."""
    return [r for r in requirement_ids if not applies(r, protocol_version)]
