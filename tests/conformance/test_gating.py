"""Spec 1.1 gating: a requirement newer than the server's announced protocol_version does not apply.

A case citing only newer requirements is not applicable ("introduced in 1.1; the server announces
1.0"); in a case mixing old and new requirements, findings on the new ones are made only for a
server announcing their version; the oracle's findings and the compliance levels follow the same
rule. The panel serves the reference server presenting itself as 1.0 (`announces_1_0`).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from conformance.context import CaseContext
from conformance.credentials import Credentials
from conformance.outcomes import Outcome
from conformance.pacing import RatePacer
from conformance.registry import Case
from conformance.runner import _oracle_findings, gate, probe, run_check
from conformance.terms import ServerTerms
from spec.catalog import requirements
from spec.machine import Violation
from tests.conformance.conftest import options
from tests.support.faults import panel_url
from tests.support.server import ServerProcess

NEW = sorted(r.id for r in requirements().values() if r.since == "1.1")
OLD = "ASP-LIM-003"
NEWER_ONE = "ASP-LIM-010"


def announcing(terms: ServerTerms, version: str) -> ServerTerms:
    return ServerTerms.from_session({**terms.session, "protocol_version": version}, terms.carriage)


async def _nothing(ctx: Any) -> None:
    return None


def test_the_catalog_has_requirements_introduced_in_1_1():
    assert NEWER_ONE in NEW and requirements()[OLD].since == "1.0"


async def test_a_case_citing_only_newer_requirements_is_not_applicable(check_server: ServerProcess):
    credentials = Credentials(options(check_server))
    terms = await probe(options(check_server), credentials)
    newer_only = Case("kit.newer", "newer only", (NEWER_ONE,), _nothing)
    mixed = Case("kit.mixed", "old and new", (OLD, NEWER_ONE), _nothing)
    old = announcing(terms, "1.0")
    assert gate(newer_only, old, options(check_server), credentials) == (
        Outcome.NOT_APPLICABLE,
        "introduced in 1.1; the server announces 1.0",
    )
    assert gate(mixed, old, options(check_server), credentials) is None
    assert gate(newer_only, announcing(terms, "1.1"), options(check_server), credentials) is None
    assert gate(newer_only, announcing(terms, "1.2"), options(check_server), credentials) is None


async def test_findings_on_newer_requirements_are_made_only_for_servers_announcing_them(
    check_server: ServerProcess,
):
    credentials = Credentials(options(check_server))
    terms = await probe(options(check_server), credentials)
    mixed = Case("kit.mixed", "old and new", (OLD, NEWER_ONE), _nothing)
    made = {}
    for version in ("1.0", "1.1"):
        ctx = CaseContext(
            mixed, 1, options(check_server), credentials, announcing(terms, version), RatePacer(None, 20)
        )
        ctx.check(False, OLD, "an old requirement")
        ctx.check(False, NEWER_ONE, "a newer requirement")
        violations = [Violation(NEWER_ONE, "from the oracle", 1), Violation(OLD, "from the oracle", 2)]
        ctx.clients.append(SimpleNamespace(violations=violations, transcript=SimpleNamespace(frames=[])))  # type: ignore[arg-type]
        _oracle_findings(ctx)
        made[version] = sorted({f.requirement for f in ctx.findings})
    assert made == {"1.0": [OLD], "1.1": sorted([OLD, NEWER_ONE])}


async def test_a_server_announcing_1_0_is_not_held_to_1_1(panel: ServerProcess):
    report = await run_check(options(panel, url=panel_url(panel.url, "announces_1_0")))
    assert report.terms is not None and report.terms.protocol_version == "1.0"
    not_passed = {r.case_id: (r.outcome, r.reason) for r in report.everything if r.outcome != Outcome.PASS}
    assert report.exit_code() == 0, not_passed
    table = report.requirement_results()
    for requirement_id in NEW:
        assert table[requirement_id]["outcome"] in ("not_applicable", "untestable"), requirement_id
        if requirements()[requirement_id].testable and requirements()[requirement_id].binds == "server":
            assert table[requirement_id] == {
                "outcome": "not_applicable",
                "cases": [],
                "reason": "introduced in 1.1; the server announces 1.0",
            }
    findings = {f.requirement for r in report.results for f in r.findings}
    assert not findings & set(NEW)  # e.g. ASP-LIM-008 of limits.connection_limit is not judged
    levels = report.compliance()
    assert (levels["core"].verdict, levels["recommended"].verdict) == ("yes", "yes"), levels
