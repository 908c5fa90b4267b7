"""Which requirements apply to a server: those of the protocol version it announces or earlier.

A requirement carries `since` (the minor version that introduced it, "1.0" when absent). A server
announcing 1.0 is never judged by a requirement introduced in 1.1: a case citing only newer
requirements is not applicable, and a finding on a newer requirement is not made.
"""

from __future__ import annotations

from spec.catalog import requirement


def version_key(version: str) -> tuple[int, ...]:
    """ "1.10" -> (1, 10); anything unparsable sorts as (0,)."""
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)


def since(requirement_id: str) -> str:
    """The protocol version that introduced a requirement."""
    return str(getattr(requirement(requirement_id), "since", None) or "1.0")


def applies(requirement_id: str, protocol_version: str) -> bool:
    """Whether a server announcing `protocol_version` is bound by the requirement."""
    return version_key(since(requirement_id)) <= version_key(protocol_version)


def newer_than(requirement_ids: list[str] | tuple[str, ...], protocol_version: str) -> list[str]:
    """The requirements of the list introduced after `protocol_version`."""
    return [r for r in requirement_ids if not applies(r, protocol_version)]
