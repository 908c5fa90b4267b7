"""Runs the selected cases against one server and turns what they found into a report."""

from __future__ import annotations

import asyncio
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from conformance.baseline import Baseline
from conformance.context import CaseAbort, CaseContext, ServerTerms
from conformance.credentials import Credentials, Unavailable
from conformance.options import CheckOptions
from conformance.outcomes import CaseResult, Finding, Outcome, worst
from conformance.registry import ORACLE_REQUIREMENTS, Case, all_cases
from conformance.wire import AspClient, Closed, HandshakeRefused
from spec import PROTOCOL_VERSION
from spec.catalog import requirements

KIT_VERSION = "0.1.0"


class ProbeFailed(Exception):
    """The server could not even be reached and authenticated: nothing can be checked.

    `requirements` names what the probe's own connection saw broken (always-on oracle included).
    """

    def __init__(self, reason: str, requirements: list[str] | None = None) -> None:
        super().__init__(reason + (f" [{', '.join(requirements)}]" if requirements else ""))
        self.requirements = requirements or []


@dataclass
class Report:
    target: str
    started: str
    duration_s: float
    terms: ServerTerms | None
    results: list[CaseResult] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def requirement_results(self) -> dict[str, dict[str, Any]]:
        """Per catalog requirement: its outcome across the cases that cite it (or why none could)."""
        table: dict[str, dict[str, Any]] = {}
        for requirement in requirements().values():
            if not requirement.testable:
                table[requirement.id] = {
                    "outcome": Outcome.UNTESTABLE.value,
                    "cases": [],
                    "reason": requirement.reason or "",
                }
                continue
            outcomes: list[Outcome] = []
            cases: list[str] = []
            for result in self.results:
                if requirement.id not in result.requirements and not any(
                    f.requirement == requirement.id for f in result.findings
                ):
                    continue
                cases.append(result.case_id)
                judged = [f.outcome for f in result.findings if f.requirement == requirement.id]
                if result.outcome in (
                    Outcome.NOT_APPLICABLE,
                    Outcome.UNTESTABLE,
                    Outcome.HARNESS_ERROR,
                    Outcome.EXPECTED_FAILURE,
                    Outcome.STALE_BASELINE,
                ):
                    outcomes.append(result.outcome)
                elif judged:
                    outcomes.append(worst(judged) or Outcome.PASS)
                elif result.outcome in (Outcome.PASS, Outcome.INFO):
                    outcomes.append(Outcome.PASS)
            outcome = worst(outcomes)
            table[requirement.id] = {
                "outcome": (outcome or Outcome.UNTESTABLE).value,
                "cases": cases,
                "reason": "" if outcome else "no case ran for it (excluded or deselected)",
            }
        return table

    def compliance(self) -> dict[str, bool]:
        """core / recommended / full, as PROTOCOL.md section 18 defines them."""
        table = self.requirement_results()
        catalog = requirements()
        declared = self.terms.capabilities if self.terms else frozenset()

        def passes(ids: list[str]) -> bool:
            return all(table[i]["outcome"] in ("pass", "not_applicable", "untestable") for i in ids)

        server_reqs = [r for r in catalog.values() if r.binds == "server" and r.testable]
        core = passes([r.id for r in server_reqs if r.level == "MUST" and r.method != "capability"])
        recommended = core and passes([r.id for r in server_reqs if r.level == "SHOULD"])
        full = (
            recommended
            and {"history", "cancel", "resume"} <= declared
            and all(
                table[r.id]["outcome"] == "pass"
                for r in server_reqs
                if r.capability in declared and r.level == "MUST"
            )
        )
        return {"core": core, "recommended": recommended, "full": full}

    def counts(self) -> dict[str, int]:
        counted: dict[str, int] = {outcome.value: 0 for outcome in Outcome}
        for result in self.results:
            counted[result.outcome.value] += 1
        return counted

    def exit_code(self, strict: bool) -> int:
        bad = {Outcome.FAIL, Outcome.HARNESS_ERROR, Outcome.STALE_BASELINE}
        if strict:
            bad.add(Outcome.WARNING)
        if any(result.outcome in bad for result in self.results):
            return (
                2 if all(r.outcome == Outcome.HARNESS_ERROR for r in self.results if r.outcome in bad) else 1
            )
        return 0


async def probe(options: CheckOptions, credentials: Credentials) -> ServerTerms:
    """Connect once to learn the server's limits and capabilities."""
    try:
        token = credentials.token(0, 0)
    except Unavailable as missing:
        raise ProbeFailed(f"no credentials: give --token, --token-file or --jwt-secret ({missing})") from None
    try:
        client = await AspClient.open(
            options.url, token=token, headers=options.headers or None, timeout=10 * options.timeout_multiplier
        )
    except HandshakeRefused as refused:
        raise ProbeFailed(f"handshake refused with HTTP {refused.status}") from None
    except (OSError, TimeoutError) as exc:
        raise ProbeFailed(f"cannot connect to {options.url}: {exc}") from None
    try:
        session = await client.expect("session", 10 * options.timeout_multiplier)
    except (TimeoutError, Closed) as exc:
        seen = sorted({v.requirement for v in client.violations} | {"ASP-SES-001"})
        raise ProbeFailed(f"no session event from the server: {exc}", seen) from None
    finally:
        await client.close()
    if client.violations:
        raise ProbeFailed(
            "the session event breaks the spec", sorted({v.requirement for v in client.violations})
        )
    return ServerTerms.from_session(session)


def selected(cases: list[Case], options: CheckOptions) -> list[Case]:
    def matches(case: Case, selector: str) -> bool:
        return (
            selector == case.id
            or case.id.startswith(selector + ".")
            or selector in case.requirements
            or (selector == case.section)
        )

    chosen = [c for c in cases if not options.include or any(matches(c, s) for s in options.include)]
    return [c for c in chosen if not any(matches(c, s) for s in options.exclude)]


def gate(
    case: Case, terms: ServerTerms, options: CheckOptions, credentials: Credentials
) -> tuple[Outcome, str] | None:
    """Why a case cannot run here (not applicable or untestable), or None when it can."""
    missing = [c for c in case.capabilities if c not in terms.capabilities]
    if missing:
        return Outcome.NOT_APPLICABLE, f"the server does not declare {', '.join(missing)}"
    if case.fixtures and "fixtures" not in terms.capabilities:
        return Outcome.UNTESTABLE, "needs the fixtures capability, which the server does not declare"
    users = credentials.users_available()
    limit = terms.limits.get("max_connections") or options.max_connections
    for need in case.needs:
        if need == "jwt_secret" and not credentials.can_mint:
            return Outcome.UNTESTABLE, "needs --jwt-secret to mint special tokens"
        if need == "two_users" and users is not None and users < 2:
            return Outcome.UNTESTABLE, "needs two users: --token-file with two tokens, or --jwt-secret"
        if need == "max_connections" and not limit:
            return Outcome.UNTESTABLE, "the server announces no max_connections; pass --max-connections"
        if need == "many_users" and users is not None and (not limit or users < int(limit) + 3):
            return (
                Outcome.UNTESTABLE,
                "needs max_connections + 3 distinct users: --jwt-secret or --token-file",
            )
    return None


async def run_case(
    case: Case, index: int, options: CheckOptions, credentials: Credentials, terms: ServerTerms
) -> CaseResult:
    started = time.monotonic()

    def result(outcome: Outcome, reason: str = "", ctx: CaseContext | None = None) -> CaseResult:
        return CaseResult(
            case_id=case.id,
            title=case.title,
            section=case.section,
            requirements=list(case.requirements),
            outcome=outcome,
            duration_s=round(time.monotonic() - started, 3),
            reason=reason,
            findings=list(ctx.findings) if ctx else [],
            transcripts=[[f.as_dict() for f in c.transcript.frames] for c in ctx.clients] if ctx else [],
        )

    blocked = gate(case, terms, options, credentials)
    if blocked:
        return result(*blocked)
    ctx = CaseContext(case, index, options, credentials, terms)
    reason = ""
    try:
        await asyncio.wait_for(case.body(ctx), case.timeout_s * options.timeout_multiplier)
    except CaseAbort as abort:
        reason = str(abort)
    except TimeoutError:
        ctx.findings.append(
            Finding(
                case.requirements[0],
                False,
                f"the case did not finish within {case.timeout_s * options.timeout_multiplier:.0f}s",
            )
        )
    except Unavailable as missing:
        await ctx.close_all()
        return result(Outcome.UNTESTABLE, str(missing), ctx)
    except Exception:
        await ctx.close_all()
        return result(Outcome.HARNESS_ERROR, traceback.format_exc(limit=8), ctx)
    await ctx.close_all()
    _oracle_findings(ctx)
    judged = [f.outcome for f in ctx.findings]
    outcome = worst(judged) or Outcome.INFO
    if not reason:
        failed = [f for f in ctx.findings if not f.passed]
        reason = failed[0].message if failed else ""
    return result(outcome, reason, ctx)


def _oracle_findings(ctx: CaseContext) -> None:
    """Every frame every connection of the case received, judged again by schema and machine."""
    for client in ctx.clients:
        for violation in client.violations:
            ctx.findings.append(Finding(violation.requirement, False, str(violation), source="oracle"))
        for frame in client.transcript.frames:
            for token in ctx.tokens_used:
                if (
                    frame.direction in ("recv", "close")
                    and token
                    and len(token) >= 8
                    and token in ((frame.text or "") + (frame.reason or ""))
                ):
                    ctx.findings.append(
                        Finding("ASP-AUTH-007", False, "the server echoed a token", source="oracle")
                    )


def oracle_summary(results: list[CaseResult]) -> CaseResult:
    """A synthetic case: the oracle's verdict over every frame of the run, per requirement it judges."""
    findings = [f for r in results for f in r.findings if f.source == "oracle"]
    ran = [r for r in results if r.transcripts]
    for requirement_id in ORACLE_REQUIREMENTS:
        if not any(f.requirement == requirement_id for f in findings):
            findings.append(
                Finding(requirement_id, True, f"no violation in {len(ran)} cases' frames", "oracle")
            )
    outcome = worst([f.outcome for f in findings]) or Outcome.PASS
    failed = [f for f in findings if not f.passed]
    return CaseResult(
        case_id="oracle.all_frames",
        title="Every frame of every case passes the schemas and the lifecycle machine",
        section="envelope",
        requirements=list(ORACLE_REQUIREMENTS),
        outcome=outcome,
        duration_s=0.0,
        reason=failed[0].message if failed else "",
        findings=findings,
    )


async def run_check(options: CheckOptions, progress: Any = None) -> Report:
    credentials = Credentials(options)
    began = time.monotonic()
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    terms = await probe(options, credentials)
    baseline = Baseline.load(options.expected_failures) if options.expected_failures else Baseline()
    results: list[CaseResult] = []
    for index, case in enumerate(selected(all_cases(), options), start=1):
        outcome = await run_case(case, index, options, credentials, terms)
        outcome = baseline.apply(outcome)
        results.append(outcome)
        if progress is not None:
            progress(outcome)
    results.append(baseline.apply(oracle_summary(results)))
    results.extend(baseline.unmatched(results))
    return Report(
        target=options.url,
        started=stamp,
        duration_s=round(time.monotonic() - began, 3),
        terms=terms,
        results=results,
        options={
            "timeout_multiplier": options.timeout_multiplier,
            "strict": options.strict,
            "include": options.include,
            "exclude": options.exclude,
            "protocol_version": PROTOCOL_VERSION,
            "kit_version": KIT_VERSION,
        },
    )
