"""What a check is told: the target, credentials, budgets and selections."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class CheckOptions:
    url: str
    tokens: list[str] = field(default_factory=list)
    jwt_secret: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout_multiplier: float = 1.0
    max_wait_s: float = 20.0  # longest real-time wait (idle timeout) a case may take, before the multiplier
    max_connections: int | None = None  # when the server does not announce its limit
    include: list[str] = field(default_factory=list)  # case ids, requirement ids or sections
    exclude: list[str] = field(default_factory=list)
    strict: bool = False  # warnings (missed SHOULDs) fail the run
    expected_failures: Path | None = None
    fuzz_examples: int = 40  # generated inputs per fuzz case
    user_prefix: str = "asp-kit"


def load_token_file(path: Path) -> list[str]:
    """One token per line; blank lines and # comments ignored."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
