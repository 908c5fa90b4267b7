"""What `asp check-client` is told: the command, selections, budgets and the baseline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from spec import PROTOCOL_VERSION


@dataclass
class ClientCheckOptions:
    """`command` is the client under test as an argument list (run without a shell)."""

    command: list[str]
    include: list[str] = field(default_factory=list)  # scenario ids, requirement ids or sections
    exclude: list[str] = field(default_factory=list)
    strict: bool = False  # warnings (missed SHOULDs) fail the run
    expected_failures: Path | None = None
    timeout_multiplier: float = 1.0  # scales every wait and the late tolerance of timing checks
    protocol_version: str = PROTOCOL_VERSION  # the version the client is held to
