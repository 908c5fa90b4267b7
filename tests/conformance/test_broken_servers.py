"""The kit catches each deliberately broken server, naming the requirement it breaks."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.runner import ProbeFailed, run_check
from tests.conformance.conftest import options, start
from tests.support.faults import FAULTS


def test_the_panel_has_at_least_twenty_broken_servers_each_breaking_a_different_way():
    assert len(FAULTS) >= 20
    assert len({(f.requirement, f.cases) for f in FAULTS.values()}) == len(FAULTS)


@pytest.mark.parametrize("name", sorted(FAULTS))
async def test_the_kit_fails_the_broken_server_with_the_right_requirement(name: str, tmp_path: Path):
    fault = FAULTS[name]
    server = start(
        tmp_path / "asp.db", module="tests.support.broken_server", ASP_FAULT=name, **fault.settings
    )
    try:
        report = await run_check(options(server, include=list(fault.cases), strict=fault.strict))
    except ProbeFailed as refused:  # broken before any case could run: the probe names the requirement
        assert fault.requirement in refused.requirements, f"{name}: probe named {refused.requirements}"
        return
    finally:
        server.stop()
    failed = {f.requirement for r in report.results for f in r.findings if not f.passed}
    assert report.exit_code(fault.strict) == 1, f"{name}: the kit passed a broken server"
    assert fault.requirement in failed, (
        f"{name}: expected {fault.requirement}, the kit named {sorted(failed)}"
    )
