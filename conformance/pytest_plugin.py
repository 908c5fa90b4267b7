"""pytest plugin: `pytest --pyargs conformance.suite --asp-url URL` runs the kit's cases as tests.

Each case is one test; not applicable and untestable cases are skipped with their reason (never
silently), failures fail with the requirement IDs and findings, warnings fail under --asp-strict.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("asp", "ASP conformance")
    group.addoption("--asp-url", help="ws:// URL of the ASP server to check")
    group.addoption("--asp-token", action="append", default=[], help="bearer token (repeat for more users)")
    group.addoption("--asp-token-file", help="file with one token per line")
    group.addoption("--asp-jwt-secret", help="mint HS256 tokens for servers you control")
    group.addoption("--asp-timeout-multiplier", type=float, default=1.0)
    group.addoption("--asp-max-connections", type=int)
    group.addoption("--asp-strict", action="store_true", help="missed SHOULDs fail")


def check_options(config: pytest.Config) -> Any:
    from pathlib import Path

    from conformance.options import CheckOptions, load_token_file

    url = config.getoption("--asp-url")
    if not url:
        pytest.skip("no --asp-url given: the ASP conformance suite needs a server to check")
    tokens = list(config.getoption("--asp-token"))
    if config.getoption("--asp-token-file"):
        tokens += load_token_file(Path(config.getoption("--asp-token-file")))
    return CheckOptions(
        url=url,
        tokens=tokens,
        jwt_secret=config.getoption("--asp-jwt-secret"),
        timeout_multiplier=config.getoption("--asp-timeout-multiplier"),
        max_connections=config.getoption("--asp-max-connections"),
        strict=config.getoption("--asp-strict"),
    )


def run_one(config: pytest.Config, case_id: str, state: dict[str, Any]) -> None:
    """Run one case (probing the server once per session) and turn its outcome into a pytest verdict."""
    from conformance.credentials import Credentials
    from conformance.outcomes import Outcome
    from conformance.registry import CASES, all_cases
    from conformance.runner import ProbeFailed, probe, run_case

    options = check_options(config)
    if "credentials" not in state:
        state["credentials"] = Credentials(options)
        try:
            state["terms"] = asyncio.run(probe(options, state["credentials"]))
        except ProbeFailed as refused:
            state["terms"] = refused
    if isinstance(state["terms"], ProbeFailed):
        pytest.fail(f"cannot check {options.url}: {state['terms']}")
    all_cases()
    index = list(CASES).index(case_id) + 1
    result = asyncio.run(run_case(CASES[case_id], index, options, state["credentials"], state["terms"]))
    if result.outcome in (Outcome.NOT_APPLICABLE, Outcome.UNTESTABLE):
        pytest.skip(f"{result.outcome.value}: {result.reason}")
    findings = "\n".join(f"{f.requirement} {f.message}" for f in result.findings if not f.passed)
    if result.outcome == Outcome.HARNESS_ERROR:
        pytest.fail(f"harness error:\n{result.reason}")
    if result.outcome == Outcome.FAIL or (result.outcome == Outcome.WARNING and options.strict):
        pytest.fail(f"{case_id} ({', '.join(result.requirements)}):\n{findings}")
