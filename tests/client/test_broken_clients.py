"""asp check-client catches each deliberately broken client, naming the requirement it breaks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.client.options import ClientCheckOptions
from conformance.client.runner import run_client_check
from spec.catalog import requirements
from tests.client.broken_clients import PANEL
from tests.client.conftest import NODE

REQUIRED = {
    "fixed_3s_retry",
    "retries_after_4001",
    "storm_without_jitter",
    "wrong_last_seq",
    "duplicates_kept",
    "retries_not_retryable",
    "x_event_is_an_error",
}


def test_the_panel_has_the_broken_clients_of_the_issue_and_one_per_client_requirement():
    assert set(PANEL) >= REQUIRED

    client = {r.id for r in requirements().values() if r.binds == "client" and r.method == "client-driver"}
    caught = {broken.requirement for broken in PANEL.values()}
    assert client - caught <= {"ASP-TRN-003", "ASP-AUTH-008"}, client - caught


@pytest.mark.parametrize("name", sorted(PANEL))
async def test_the_kit_catches_the_broken_client_with_its_requirement(name: str, tmp_path: Path):
    broken = PANEL[name]
    command = list(broken.command)
    if not command:
        patch = tmp_path / "patch.json"
        patch.write_text(json.dumps([{"find": f, "replace": r} for f, r in broken.patches]))
        command = [*NODE, "--patch", str(patch)]
    options = ClientCheckOptions(command=command, include=list(broken.scenarios), strict=broken.strict)
    report = await run_client_check(options)
    failed = [f for r in report.everything for f in r.findings if not f.passed]
    outcomes = {r.case_id: (r.outcome.value, r.reason) for r in report.results}
    assert report.exit_code() == 1, f"{name}: the kit passed a broken client: {outcomes}"
    named = [f for f in failed if f.requirement == broken.requirement]
    assert named, (
        f"{name}: expected {broken.requirement}, the kit named {sorted({f.requirement for f in failed})}"
    )
    assert any(broken.finding in f.message for f in named), [f.message for f in named]
