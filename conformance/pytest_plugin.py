"""pytest plugin: `pytest --pyargs conformance.suite --asp-url URL` runs the kit's cases as tests.

One test per case (the same count `asp check --list` gives). Not applicable and untestable cases
are skipped with their reason (never silently); a case fails exactly when `asp check` would fail
the run on it (`conformance.outcomes.blocks`). Collecting the suite without --asp-url, with a bad
URL, or with credentials the server refuses is a usage error.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conformance.options import JWT_SECRET_VARIABLE, TOKEN_VARIABLE

SUITE_MODULE = "conformance/suite/test_asp_conformance.py"
_STATE = pytest.StashKey[dict[str, Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("asp", "ASP conformance")
    group.addoption("--asp-url", help="ws:// URL of the ASP server to check")
    group.addoption(
        "--asp-token",
        action="append",
        default=[],
        help=f"bearer token (repeat for more users; prefer {TOKEN_VARIABLE}: flags show in process lists)",
    )
    group.addoption("--asp-token-file", help="file with one token per line")
    group.addoption(
        "--asp-jwt-secret",
        help=f"mint HS256 tokens for servers you control (prefer {JWT_SECRET_VARIABLE}: flags show in "
        "process lists)",
    )
    group.addoption("--asp-jwt-algorithms", help="JWS algorithms the server is configured for (HS256,...)")
    group.addoption("--asp-timeout-multiplier", type=float, default=1.0)
    group.addoption("--asp-max-wait", type=float, default=20.0, help="longest real-time wait, seconds")
    group.addoption("--asp-max-connections", type=int)
    group.addoption("--asp-strict", action="store_true", help="missed SHOULDs fail")


def check_options(config: pytest.Config) -> Any:
    """The CheckOptions the pytest options describe.

    Credentials as `asp check` takes them: the flags, else ASP_CHECK_TOKEN / ASP_CHECK_JWT_SECRET.

    Raises:
        pytest.UsageError: no --asp-url, or a URL that is not ws:// or wss://.
    """
    import os
    from pathlib import Path

    from conformance.options import CheckOptions, UsageError, load_token_file, parse_algorithms

    url = config.getoption("--asp-url")
    if not url:
        raise pytest.UsageError(
            "the ASP conformance suite needs a server to check: --asp-url ws://HOST:PORT/PATH "
            "(with --asp-jwt-secret or --asp-token)"
        )
    given = os.environ.get(TOKEN_VARIABLE)
    tokens = list(config.getoption("--asp-token") or ([given] if given else []))
    try:
        if config.getoption("--asp-token-file"):
            tokens += load_token_file(Path(config.getoption("--asp-token-file")), "--asp-token-file")
        options = CheckOptions(
            url=url,
            tokens=tokens,
            jwt_secret=config.getoption("--asp-jwt-secret") or os.environ.get(JWT_SECRET_VARIABLE) or None,
            timeout_multiplier=config.getoption("--asp-timeout-multiplier"),
            max_wait_s=config.getoption("--asp-max-wait"),
            max_connections=config.getoption("--asp-max-connections"),
            strict=config.getoption("--asp-strict"),
            jwt_algorithms=parse_algorithms(config.getoption("--asp-jwt-algorithms")),
        )
        options.validate(lambda name: "--asp-" + name.removeprefix("--"))
    except (UsageError, OSError) as problem:
        raise pytest.UsageError(str(problem)) from None
    return options


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """When the suite is collected: check the options and probe the server once."""
    if not any(str(item.path).replace("\\", "/").endswith(SUITE_MODULE) for item in items):
        return
    from conformance.credentials import Credentials
    from conformance.registry import all_cases
    from conformance.runner import CredentialsRefused, ProbeFailed, pacer_for, plan, probe

    options = check_options(config)
    credentials = Credentials(options)
    state: dict[str, Any] = {"options": options, "credentials": credentials}
    try:
        terms = asyncio.run(probe(options, credentials))
    except CredentialsRefused as refused:
        raise pytest.UsageError(credentials.redact(refused.reason)) from None
    except ProbeFailed as failed:
        state["refused"] = credentials.redact(str(failed))
    else:
        plan(all_cases(), terms, options, credentials)
        state["terms"] = terms
        state["pacer"] = pacer_for(terms, options)
    config.stash[_STATE] = state


def run_one(config: pytest.Config, case_id: str) -> None:
    """Run one case and turn its outcome into a pytest verdict."""
    from conformance.options import shown_url
    from conformance.outcomes import Outcome, fails
    from conformance.registry import CASES
    from conformance.runner import case_index, run_case

    state = config.stash.get(_STATE, None)
    if state is None:
        raise pytest.UsageError("the ASP conformance suite needs --asp-url")
    if "refused" in state:
        pytest.fail(f"cannot check {shown_url(state['options'].url)}: {state['refused']}")
    case = CASES[case_id]
    options = state["options"]
    result = asyncio.run(
        run_case(case, case_index(case), options, state["credentials"], state["terms"], state["pacer"])
    )
    if result.outcome in (Outcome.NOT_APPLICABLE, Outcome.UNTESTABLE):
        pytest.skip(f"{result.outcome.value}: {result.reason}")
    if result.outcome == Outcome.HARNESS_ERROR:
        pytest.fail(f"harness error (the kit's own fault, not a verdict):\n{result.reason}")
    if fails(result, "warning" if options.strict else "error"):  # the rule of asp check --strict
        findings = "\n".join(f"{f.requirement} {f.message}" for f in result.findings if not f.passed)
        pytest.fail(f"{case_id} ({', '.join(result.requirements)}):\n{findings}")
