"""Runs the selected cases against one server and turns what they found into a report.

`run_check` probes the server once (learning its terms and the token carriage that works), then
schedules the cases: a case that needs the server to itself first, the cases that wait on real
time (idle timeouts, long runs) beside the others when their users and connections allow it,
the rest one after another. Every case ends with a verdict: a case never hangs the check (its
budget grows with its own waits; the kit's stalls beyond it are harness errors), a premise that
did not hold is retried with longer runs and then untestable, never a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime

from websockets.exceptions import ConnectionClosed

from conformance import generate
from conformance.baseline import Baseline
from conformance.context import ANSWER_S, CaseAbort, CaseContext, Precondition
from conformance.credentials import Credentials, Unavailable
from conformance.gating import applies, newer_than, since
from conformance.options import JWT_SECRET_VARIABLE, TOKEN_VARIABLE, CheckOptions, UsageError, shown_url
from conformance.outcomes import CaseResult, Finding, Outcome, worst
from conformance.pacing import RatePacer
from conformance.registry import CASES, ORACLE_REQUIREMENTS, TOKEN_ECHO, Case, all_cases
from conformance.report.model import KIT_VERSION, Report
from conformance.terms import ServerTerms
from conformance.wire import AspClient, Closed, HandshakeBroken, HandshakeRefused
from spec import PROTOCOL_VERSION
from spec.registry import close_code

UNAUTHORIZED = close_code("unauthorized")
# Longer runs on the second attempt of a case whose premise did not hold on the first.
RETRY_STRETCH = 4.0

Progress = Callable[[CaseResult], None]


class ProbeFailed(Exception):
    """The server could not be reached, or its first connection broke the spec: nothing can be
    checked. `requirements` names what the probe saw broken; `transcript` is its wire log."""

    def __init__(
        self,
        reason: str,
        requirements: list[str] | None = None,
        transcript: list[dict[str, object]] | None = None,
    ) -> None:
        super().__init__(reason + (f" [{', '.join(requirements)}]" if requirements else ""))
        self.reason = reason
        self.requirements = requirements or []
        self.transcript = transcript or []


class CredentialsRefused(ProbeFailed):
    """The server refused the credentials the user gave (4001 in every token carriage)."""


async def probe(options: CheckOptions, credentials: Credentials) -> ServerTerms:
    """Connect once to learn the server's terms and which token carriage works.

    The token goes in the query parameter (ASP-AUTH-001), and when that is refused with 4001, in
    the `asp.token.` subprotocol (ASP-AUTH-002): a server that honours only one is checked through
    it, and the case of the other carriage fails on that carriage's own requirement.

    Raises:
        CredentialsRefused: 4001 in both carriages.
        ProbeFailed: unreachable, refused otherwise, or a first connection that breaks the spec.
    """
    try:
        token = credentials.token(0, 0)
    except Unavailable as missing:
        raise ProbeFailed(f"no credentials: give --token, --token-file or --jwt-secret ({missing})") from None
    refused: list[str] = []
    for carriage in ("query", "subprotocol"):
        client = await _probe_connection(options, token, carriage, first=not refused)
        try:
            session = await client.expect("session", ANSWER_S * options.timeout_multiplier)
        except (TimeoutError, Closed) as exc:
            if client.close_code == UNAUTHORIZED and not client.events:
                refused.append(carriage)
                await client.close()
                continue
            seen = sorted({v.requirement for v in client.violations} | {"ASP-SES-001"})
            raise ProbeFailed(f"no session event from the server: {exc}", seen, _frames(client)) from None
        finally:
            await client.close()
        if client.violations:
            raise ProbeFailed(
                "the first connection breaks the spec: " + "; ".join(str(v) for v in client.violations[:3]),
                sorted({v.requirement for v in client.violations}),
                _frames(client),
            )
        return ServerTerms.from_session(session, carriage)
    given = (  # given by flag or by variable: both named, the check cannot tell which it was
        f"--jwt-secret (or {JWT_SECRET_VARIABLE})"
        if credentials.can_mint
        else f"--token / --token-file (or {TOKEN_VARIABLE})"
    )
    raise CredentialsRefused(
        f"the server refused the credentials (close {UNAUTHORIZED} with the token in the query and in the "
        f"asp.token. subprotocol): check {given}"
    )


async def _probe_connection(options: CheckOptions, token: str, carriage: str, *, first: bool) -> AspClient:
    """The probe's connection with the token in `carriage`; `first`: the check's very first handshake.

    A first handshake that never upgrades is no evidence the URL is an ASP endpoint (a wrong path, a
    web server, another service): nothing can be checked, as when nothing listens, and no requirement
    is judged. Once the server has upgraded, refusing a valid upgrade breaks ASP-TRN-002.

    Raises:
        ProbeFailed: unreachable or not an ASP endpoint (no requirement), or a later upgrade refused
            (ASP-TRN-002).
    """
    try:
        return await AspClient.open(
            options.url,
            token=token,
            token_in=carriage,
            headers=options.headers or None,
            timeout=ANSWER_S * options.timeout_multiplier,
        )
    except HandshakeRefused as refused:
        if first:  # never upgraded: no evidence this URL is an ASP endpoint, so no verdict on one
            raise ProbeFailed(
                f"no ASP endpoint answered at this URL (HTTP {refused.status}: is the path right? "
                "are the credentials right?)"
            ) from None
        raise ProbeFailed(
            f"the handshake was refused with HTTP {refused.status} instead of 101", ["ASP-TRN-002"]
        ) from None
    except HandshakeBroken as broken:
        if first:
            raise ProbeFailed(
                f"no ASP endpoint answered at this URL ({broken.problem}: is it a WebSocket endpoint?)"
            ) from None
        raise ProbeFailed(f"{broken}, not answered with 101", ["ASP-TRN-002"]) from None
    except (OSError, TimeoutError) as exc:
        raise ProbeFailed(f"cannot connect: {exc}") from None


def _frames(client: AspClient) -> list[dict[str, object]]:
    return [f.as_dict() for f in client.transcript.frames]


def selected(cases: list[Case], options: CheckOptions) -> list[Case]:
    """The cases the --cases / --exclude selectors choose (case ids, sections, requirement IDs).

    Raises:
        UsageError: a selector that matches no case.
    """

    def matches(case: Case, selector: str) -> bool:
        return (
            selector == case.id
            or case.id.startswith(selector + ".")
            or selector in case.requirements
            or (selector == case.section)
        )

    unknown = [s for s in [*options.include, *options.exclude] if not any(matches(c, s) for c in cases)]
    if unknown:
        raise UsageError(
            f"{', '.join(unknown)} matches no case (case ids, sections, requirement IDs: asp check --list)"
        )
    chosen = [c for c in cases if not options.include or any(matches(c, s) for s in options.include)]
    return [c for c in chosen if not any(matches(c, s) for s in options.exclude)]


def case_index(case: Case) -> int:
    """A case's stable number (its place in the registry), naming its minted users."""
    all_cases()
    return list(CASES).index(case.id) + 1 if case.id in CASES else 10_000 + len(case.id)


def gate(
    case: Case, terms: ServerTerms, options: CheckOptions, credentials: Credentials
) -> tuple[Outcome, str] | None:
    """Why a case cannot run here (not applicable or untestable), or None when it can."""
    newer = newer_than(case.requirements, terms.protocol_version)
    if newer and len(newer) == len(case.requirements):
        versions = sorted({since(r) for r in newer})
        return (
            Outcome.NOT_APPLICABLE,
            f"introduced in {', '.join(versions)}; the server announces {terms.protocol_version}",
        )
    missing = [c for c in case.capabilities if c not in terms.capabilities]
    if missing:
        return Outcome.NOT_APPLICABLE, f"the server does not declare {', '.join(missing)}"
    if case.fixtures and "fixtures" not in terms.capabilities:
        return Outcome.UNTESTABLE, "needs the fixtures capability, which the server does not declare"
    users = credentials.users_for(case_index(case))
    limit = terms.max_connections or options.max_connections
    # One user's connections superseding each other take one slot where ASP-LIM-007 applies.
    slots = 1 if case.supersedes and applies("ASP-LIM-007", terms.protocol_version) else case.connections
    if limit is not None and slots > limit and "many_users" not in case.needs:
        return (
            Outcome.UNTESTABLE,
            f"holds {case.connections} connections at once; the server's limit is {limit}",
        )
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
    case: Case,
    index: int,
    options: CheckOptions,
    credentials: Credentials,
    terms: ServerTerms,
    pacer: RatePacer | None = None,
) -> CaseResult:
    """Run one case to its verdict (never raises for anything the case or server does).

    A case whose premise did not hold (`Precondition`) runs once more with runs `RETRY_STRETCH`
    times longer; then it is untestable with the reason.
    """
    started = time.monotonic()
    blocked = gate(case, terms, options, credentials)
    if blocked:
        return _result(case, started, blocked[0], blocked[1], None, credentials)
    pacer = pacer or pacer_for(terms, options)
    premise = ""
    for stretch in (1.0, RETRY_STRETCH):
        ctx = CaseContext(case, index, options, credentials, terms, pacer, stretch=stretch)
        try:
            outcome, reason = await _attempt(case, ctx)
        except Precondition as missed:
            premise = str(missed)
            continue
        if premise and outcome == Outcome.UNTESTABLE:
            # Why the longer runs were tried at all: the retry's own limit alone hides the cause.
            reason = f"{reason}; tried because on the first attempt {premise}"
        return _result(case, started, outcome, reason, ctx, credentials)
    return _result(
        case,
        started,
        Outcome.UNTESTABLE,
        f"the scenario's premise did not hold, also with {RETRY_STRETCH:g}x longer runs: {premise}",
        None,
        credentials,
    )


async def _attempt(case: Case, ctx: CaseContext) -> tuple[Outcome, str]:
    """One attempt: the body under its growing budget, then the oracle's findings.

    Raises:
        Precondition: the case's premise did not hold.
    """
    reason = ""
    body = asyncio.create_task(case.body(ctx), name=f"case {case.id}")
    try:
        while not body.done():
            remaining = ctx.deadline - time.monotonic()
            if remaining <= 0:
                body.cancel()
                with contextlib.suppress(BaseException):
                    await body
                await ctx.close_all()
                return (
                    Outcome.HARNESS_ERROR,
                    f"the kit's own budget for the case ran out while it waited for {ctx.waiting_for} "
                    "(the kit stalled: not a verdict on the server)",
                )
            await asyncio.wait({body}, timeout=remaining)
        body.result()
    except CaseAbort as abort:
        reason = str(abort)
    except Precondition:
        await ctx.close_all()
        raise
    except Unavailable as missing:
        await ctx.close_all()
        return Outcome.UNTESTABLE, str(missing)
    except (Closed, ConnectionClosed) as gone:
        # A connection ended under the case (a send or read on it failed): a verdict when what the
        # server sent explains it (an unreadable frame, a close it may not send), else the kit's.
        await ctx.close_all()
        _oracle_findings(ctx)
        failed = [f for f in ctx.findings if not f.passed]
        if not failed:
            return Outcome.HARNESS_ERROR, traceback.format_exc(limit=8)
        return worst([f.outcome for f in failed]) or Outcome.FAIL, f"{failed[0].message} ({gone})"
    except Exception:
        await ctx.close_all()
        return Outcome.HARNESS_ERROR, traceback.format_exc(limit=8)
    await ctx.close_all()
    _oracle_findings(ctx)
    outcome = worst([f.outcome for f in ctx.findings]) or Outcome.INFO
    if not reason:
        failed = [f for f in ctx.findings if not f.passed]
        reason = failed[0].message if failed else ""
    return outcome, reason


def _result(
    case: Case,
    started: float,
    outcome: Outcome,
    reason: str,
    ctx: CaseContext | None,
    credentials: Credentials,
) -> CaseResult:
    """The case's result, with every token and secret the kit knows redacted."""
    hide = credentials.redact
    return CaseResult(
        case_id=case.id,
        title=case.title,
        section=case.section,
        requirements=list(case.requirements),
        outcome=outcome,
        duration_s=round(time.monotonic() - started, 3),
        reason=hide(reason),
        findings=[Finding(f.requirement, f.passed, hide(f.message), f.source) for f in ctx.findings]
        if ctx
        else [],
        transcripts=[
            [
                {k: hide(v) if isinstance(v, str) else v for k, v in f.as_dict().items()}
                for f in c.transcript.frames
            ]
            for c in ctx.clients
        ]
        if ctx
        else [],
    )


def _oracle_findings(ctx: CaseContext) -> None:
    """Every frame every connection of the case received, judged again by schema and machine."""
    version = ctx.terms.protocol_version
    for client in ctx.clients:
        for violation in client.violations:
            if applies(violation.requirement, version):
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
                        Finding(TOKEN_ECHO, False, "the server echoed a token", source="oracle")
                    )


def oracle_summary(results: list[CaseResult]) -> CaseResult:
    """The oracle's verdict over every frame of the run, per requirement it judges."""
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


def pacer_for(terms: ServerTerms, options: CheckOptions) -> RatePacer:
    """The kit's pace under the server's announced rate limit, for the server's version."""
    return RatePacer(
        terms.rate_limit,
        options.max_wait_s,
        counts_invalid=not applies("ASP-LIM-009", terms.protocol_version),
    )


def plan(
    cases: list[Case], terms: ServerTerms, options: CheckOptions, credentials: Credentials
) -> tuple[list[Case], list[Case], list[Case]]:
    """(exclusive, beside, in_turn): the order and concurrency of the cases, and their users.

    Cases that wait on real time run beside the others when each can have users no other case
    uses meanwhile (always with --jwt-secret; with given tokens, when there are enough) and the
    connection limit leaves room; otherwise they run in turn at the end. Given tokens are spread
    over the cases (each case starts at another user) so the users' rate limits are shared out.
    """
    exclusive = [c for c in cases if c.exclusive]
    realtime = [c for c in cases if c.realtime and not c.exclusive]
    rest = [c for c in cases if not c.realtime and not c.exclusive]
    tokens = len(options.tokens)
    limit = terms.max_connections or options.max_connections
    held = sum(c.connections for c in realtime)
    room = limit is None or limit >= held + max((c.connections for c in rest), default=1) + 1
    beside = bool(realtime) and room and (credentials.can_mint or tokens >= len(realtime) + 2)
    if not credentials.can_mint and tokens:
        pool = list(range(tokens - len(realtime))) if beside else list(range(tokens))
        for case in [*exclusive, *rest, *([] if beside else realtime)]:
            start = case_index(case) % len(pool)
            credentials.assign(case_index(case), pool[start:] + pool[:start])
        if beside:
            for number, case in enumerate(realtime):
                credentials.assign(case_index(case), [tokens - 1 - number])
    if beside:
        return exclusive, realtime, rest
    return exclusive, [], rest + realtime


async def run_check(
    options: CheckOptions, progress: Progress | None = None, *, credentials: Credentials | None = None
) -> Report:
    """Check the server at `options.url`; the report always comes back, also when nothing could be
    checked (then it holds the probe's failure as a result citing what broke).

    Raises:
        UsageError: a bad URL or budget, or a selector that matches no case (before any connection).
    """
    options.validate()
    chosen = selected(all_cases(), options)
    credentials = credentials or Credentials(options)
    began = time.monotonic()
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    baseline = Baseline.load(options.expected_failures) if options.expected_failures else Baseline()

    def report(terms: ServerTerms | None, results: list[CaseResult], **extra: object) -> Report:
        return Report(
            target=shown_url(options.url),
            started=stamp,
            duration_s=round(time.monotonic() - began, 3),
            terms=terms,
            strict=options.strict,
            results=results,
            options={
                "timeout_multiplier": options.timeout_multiplier,
                "max_wait_s": options.max_wait_s,
                "jwt_algorithms": options.jwt_algorithms,
                "strict": options.strict,
                "include": options.include,
                "exclude": options.exclude,
                "protocol_version": PROTOCOL_VERSION,
                "kit_version": KIT_VERSION,
            },
            **extra,  # type: ignore[arg-type]
        )

    probe_started = time.monotonic()
    try:
        terms = await probe(options, credentials)
    except CredentialsRefused as refused:
        result = _probe_result(refused, Outcome.UNTESTABLE, credentials, time.monotonic() - probe_started)
        return report(None, [result], usage_error=credentials.redact(refused.reason))
    except ProbeFailed as failed:
        took = time.monotonic() - probe_started
        return report(None, [_probe_result(failed, Outcome.FAIL, credentials, took)])
    # In this thread, not a worker one: Hypothesis moves the interpreter's recursion limit while it
    # draws, which on CPython 3.11 before 3.11.8 can break an `ast.parse` running in another thread
    # (pytest rewriting a module it imports: "AST constructor recursion depth mismatch"). No case
    # holds a connection yet, so blocking the loop for the draw costs nothing.
    generate.warm(options.fuzz_examples)
    pacer = pacer_for(terms, options)
    exclusive, beside, in_turn = plan(chosen, terms, options, credentials)
    done: dict[str, CaseResult] = {}

    async def one(case: Case) -> None:
        result = baseline.apply(await run_case(case, case_index(case), options, credentials, terms, pacer))
        done[case.id] = result
        if progress is not None:
            progress(result)

    for case in exclusive:
        await one(case)
    background = [asyncio.create_task(one(case), name=f"beside {case.id}") for case in beside]
    for case in in_turn:
        await one(case)
    await asyncio.gather(*background)
    results = [done[c.id] for c in chosen]
    oracle = baseline.apply(oracle_summary(results))
    return report(terms, results, oracle=oracle, stale=baseline.unmatched([*results, oracle]))


def _probe_result(
    failed: ProbeFailed, outcome: Outcome, credentials: Credentials, duration_s: float
) -> CaseResult:
    reason = credentials.redact(str(failed))
    return CaseResult(
        case_id="probe.first_connection",
        title="the kit's first connection reaches the server and gets a valid session",
        section="session",
        requirements=list(failed.requirements),
        outcome=outcome,
        duration_s=round(duration_s, 3),
        reason=reason,
        findings=[Finding(r, False, reason) for r in failed.requirements],
        transcripts=[
            [
                {k: credentials.redact(v) if isinstance(v, str) else v for k, v in f.items()}
                for f in failed.transcript
            ]
        ]
        if failed.transcript
        else [],
    )
