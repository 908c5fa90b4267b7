"""One test per conformance case; see conformance.pytest_plugin for the options."""

from __future__ import annotations

import pytest

from conformance.pytest_plugin import run_one
from conformance.registry import all_cases


@pytest.mark.parametrize("case_id", [case.id for case in all_cases()])
def test_case(case_id: str, pytestconfig: pytest.Config) -> None:
    run_one(pytestconfig, case_id)
