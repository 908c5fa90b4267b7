"""The registries of registry.yaml: error codes, close codes, capabilities, fixtures."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from spec.messages import CloseCodeName
from spec.resources import load_yaml


@dataclass(frozen=True)
class CloseCode:
    code: int
    name: str
    sent_by: str
    reconnect: str
    meaning: str
    min_delay_ms: int = 0
    since: str = "1.0"


def _registry() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml("registry.yaml")
    return data


@cache
def error_codes() -> dict[str, dict[str, Any]]:
    return dict(_registry()["error_codes"])


@cache
def close_codes() -> dict[int, CloseCode]:
    return {
        int(code): CloseCode(code=int(code), **entry) for code, entry in _registry()["close_codes"].items()
    }


@cache
def capabilities() -> dict[str, str]:
    return dict(_registry()["capabilities"])


@cache
def fixtures() -> dict[str, dict[str, str]]:
    return dict(_registry()["fixtures"])


def error_requirement(code: str) -> str:
    """The requirement an error code answers, as its registry entry names it.

    Raises KeyError for a code the registry does not hold.
    """
    return str(error_codes()[code]["requirement"])


def is_retryable(code: str) -> bool:
    """Whether an error code's registry entry says retrying can help (vendor codes: no)."""
    entry = error_codes().get(code)
    return bool(entry and entry["retryable"])


def close_code(name: CloseCodeName) -> int:
    """A close code by its registry name, so code never hard-codes the numbers.

    Raises KeyError for a name the registry does not hold (mypy already rejects one not in
    `CloseCodeName`, which the drift test keeps equal to the registry).
    """
    for code in close_codes().values():
        if code.name == name:
            return code.code
    raise KeyError(name)
