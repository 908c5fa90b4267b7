"""The kit catches each deliberately broken server, naming the requirement it breaks.

Every middleware fault is served by one panel server at its own path; faults that need settings
or a patch of their own get their own process. Each fault is checked with only its cases, at a
timeout multiplier for a server on loopback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.outcomes import Outcome
from conformance.registry import all_cases
from conformance.runner import run_check
from spec.catalog import requirements
from tests.conformance.conftest import options, start
from tests.support.faults import FAULTS, panel_url
from tests.support.server import ServerProcess

# Waits for answers a broken server never sends: loopback answers in milliseconds.
PANEL_MULTIPLIER = 0.3


def test_the_panel_has_at_least_forty_broken_servers_each_citing_real_requirements_and_cases():
    assert len(FAULTS) >= 40
    known = {c.id for c in all_cases()}
    for fault in FAULTS.values():
        assert fault.requirements and set(fault.requirements) <= set(requirements()), fault.name
        assert all(c in known or any(k.startswith(c + ".") for k in known) for c in fault.cases), fault.name
        assert set(fault.also_pass) <= set(fault.cases), fault.name


@pytest.mark.parametrize("name", sorted(FAULTS))
async def test_the_kit_fails_the_broken_server_with_the_right_requirement(
    name: str, panel: ServerProcess, tmp_path: Path
):
    fault = FAULTS[name]
    own = (
        start(tmp_path / "asp.db", module="tests.support.broken_server", ASP_FAULT=name, **fault.settings)
        if fault.own_process
        else None
    )
    url = own.url if own else panel_url(panel.url, name)
    try:
        report = await run_check(
            options(
                own or panel,
                url=url,
                include=list(fault.cases),
                strict=fault.strict,
                timeout_multiplier=PANEL_MULTIPLIER,
                **fault.check,
            )
        )
    finally:
        if own:
            own.stop()
    failed = {f.requirement for r in report.everything for f in r.findings if not f.passed}
    assert report.exit_code() == 1, f"{name}: the kit passed a broken server"
    missing = set(fault.requirements) - failed
    assert not missing, f"{name}: expected {sorted(fault.requirements)}, the kit named {sorted(failed)}"
    blamed = set(fault.not_named) & failed
    assert not blamed, f"{name}: the kit blamed the symptom {sorted(blamed)}"
    outcomes = {r.case_id: r.outcome for r in report.results}
    for case_id in fault.also_pass:
        assert outcomes.get(case_id) == Outcome.PASS, f"{name}: {case_id} {outcomes.get(case_id)}"


async def test_a_server_accepting_an_unconfigured_alg_is_not_failed_when_its_algorithms_are_unknown(
    panel: ServerProcess,
):
    """Without --jwt-algorithms the kit cannot know HS512 is not configured: untestable, with why."""
    name = "accepts_unconfigured_alg"
    report = await run_check(
        options(
            panel,
            url=panel_url(panel.url, name),
            include=list(FAULTS[name].cases),
            timeout_multiplier=PANEL_MULTIPLIER,
        )
    )
    assert report.exit_code() == 0
    (result,) = report.results
    assert result.outcome == Outcome.UNTESTABLE and "--jwt-algorithms" in result.reason


@pytest.mark.parametrize(
    ("name", "ending"),
    [
        ("superseded_dropped", "ended without a close frame (1006: dropped by the server or the network)"),
        ("superseded_closes_normally", "closed with 1000, reason 'superseded by a newer connection'"),
    ],
)
async def test_a_failed_duplicate_closure_says_how_the_older_connection_closed(
    name: str, ending: str, panel: ServerProcess
):
    """ASP-DUP-001 failures name the close that came, or that none did (1006), so a reader tells a
    server closing with the wrong code from a dropped connection."""
    cases = ["duplicates.newer_supersedes_older", "duplicates.superseded_run_is_stored"]
    report = await run_check(
        options(panel, url=panel_url(panel.url, name), include=cases, timeout_multiplier=PANEL_MULTIPLIER)
    )
    assert report.exit_code() == 1
    for result in report.results:
        assert result.case_id in cases
        assert result.outcome == Outcome.FAIL, (result.case_id, result.outcome, result.reason)
        assert result.reason == f"the older connection {ending}, expected 4002", result.case_id


@pytest.mark.parametrize(
    ("name", "case_id", "requirement", "start", "end"),
    [
        (
            "auth_dropped",
            "auth.garbage_token",
            "ASP-AUTH-003",
            "malformed token: ended without a close frame (1006: dropped by the server or the network)",
            ", expected 4001",
        ),
        (
            "auth_wrong_close_code",
            "auth.garbage_token",
            "ASP-AUTH-003",
            "malformed token: closed with 1008, reason '",
            ", expected 4001",
        ),
        (
            "oversize_frames_accepted",
            "limits.frame_size",
            "ASP-LIM-003",
            "a frame one byte over the limit: the connection stayed open",
            ", expected 1009",
        ),
    ],
)
async def test_a_failed_close_says_how_the_connection_ended(
    name: str, case_id: str, requirement: str, start: str, end: str, panel: ServerProcess
) -> None:
    """A finding on a close names the close that came, that none came (1006: the TCP connection was
    dropped) or that the connection stayed open, under the same requirement as before: a reader
    tells a server closing with the wrong code from a dropped or a never-closed connection."""
    report = await run_check(
        options(panel, url=panel_url(panel.url, name), include=[case_id], timeout_multiplier=PANEL_MULTIPLIER)
    )
    assert report.exit_code() == 1
    (result,) = report.results
    assert result.outcome == Outcome.FAIL, (result.outcome, result.reason)
    failed = [f.message for f in result.findings if f.requirement == requirement and not f.passed]
    assert failed, (requirement, result.reason)
    assert failed[0].startswith(start) and failed[0].endswith(end), failed[0]
