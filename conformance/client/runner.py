"""Runs the selected client scenarios, one at a time, each against a fresh scripted server with a
fresh client process, and turns what they found into a report (the server kit's Report, its
writers and its baselines)."""

from __future__ import annotations

import asyncio
import secrets
import shlex
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from conformance.baseline import Baseline
from conformance.client.context import (
    ANSWER_S,
    START_S,
    TOKENS,
    ScenarioAbort,
    ScenarioContext,
    ScenarioUntestable,
    next_peer_while_running,
)
from conformance.client.options import ClientCheckOptions
from conformance.client.process import CannotStart, ClientProcess
from conformance.client.scenarios import WIRE_REQUIREMENTS, Scenario, all_scenarios
from conformance.client.server import Peer, ScriptedServer
from conformance.client.timing import EARLY_MS, LATE_MS
from conformance.outcomes import CaseResult, Finding, Outcome, worst
from conformance.report.model import KIT_VERSION, Report
from conformance.runner import ProbeFailed
from conformance.wire import Transcript
from spec import PROTOCOL_VERSION, SUBPROTOCOL
from spec.catalog import parse_version, requirements

FINISH_GRACE_S = 3.0  # a client has this long to close and exit at the end of its input
Progress = Callable[[CaseResult], None]
PROBE_SCENARIO_ID = "probe"
PROBE_CASE_ID = "probe.client"


@dataclass
class Ledger:
    """What a run keeps across scenarios: the connections the wire oracle saw (and how many came
    from a browser), and the client processes still shutting down."""

    connections: int = 0
    browsers: int = 0
    teardowns: list[asyncio.Task[None]] = field(default_factory=list)

    async def settle(self) -> None:
        """Wait until every client process of the run has exited and its server has stopped."""
        await asyncio.gather(*self.teardowns)
        self.teardowns.clear()


class Stage:
    """One client process against one scripted server: what every scenario and the probe run in."""

    def __init__(self, label: str, options: ClientCheckOptions) -> None:
        self.started = time.monotonic()
        self.token = secrets.token_urlsafe(24)
        self.server = ScriptedServer(self.started)
        self.transcript = Transcript(started=self.started)
        self.label = label
        self.options = options
        self.client: ClientProcess | None = None

    async def open(self) -> ClientProcess:
        """Start the server, then the client with its environment. Raises CannotStart."""
        url = await self.server.start()
        environment = {"ASP_URL": url, "ASP_TOKEN": self.token, "ASP_SCENARIO": self.label}
        self.client = ClientProcess(self.options.command, environment, self.transcript)
        try:
            await self.client.start()
        except CannotStart:
            await self.server.stop()
            raise
        return self.client

    async def close(self) -> None:
        """End the client's input, let it exit (or end it), then stop the server."""
        if self.client is not None:
            await self.client.finish(FINISH_GRACE_S * self.options.timeout_multiplier)
        await self.server.stop()

    def transcripts(self) -> list[list[dict[str, object]]]:
        """Each connection's wire log, then the client's standard input and output; the token
        redacted everywhere."""
        logs = [peer.transcript for peer in self.server.peers] + [self.transcript]
        return [[self._redacted(frame.as_dict()) for frame in log.frames] for log in logs]

    def redact(self, text: str) -> str:
        """`text` with the scenario's token replaced (a client may echo its URL or subprotocols)."""
        return text.replace(self.token, "<ASP_TOKEN>")

    def _redacted(self, frame: dict[str, object]) -> dict[str, object]:
        return {k: self.redact(v) if isinstance(v, str) else v for k, v in frame.items()}


async def probe(options: ClientCheckOptions) -> CaseResult | None:
    """Run the client once against a well-behaved server: it must connect with ASP_TOKEN (query or
    asp.token. subprotocol), report the open state, send what its user types and report the run,
    as the driver contract says (spec/CLIENT-DRIVER.md). Nothing else is judged here; without
    this nothing can be.

    Returns None when the client can be checked, else the probe's failure as a result (outcome
    fail) citing what the wire oracle saw broken, with every log of the attempt.

    Raises:
        CannotStart: the command cannot be executed.
    """
    began = time.monotonic()
    stage = Stage(PROBE_SCENARIO_ID, options)
    client = await stage.open()
    try:
        await _probe(stage, client, options)
        return None
    except ProbeFailed as failed:
        reason = str(failed)
    finally:
        await stage.close()
    broken = wire_findings(stage.server.peers, options)
    if broken:
        reason += "; on the wire: " + "; ".join(f"{f.requirement}: {f.message}" for f in broken[:3])
    return CaseResult(
        case_id=PROBE_CASE_ID,
        title="the client connects, reports its state, sends what its user types and reports the run",
        section="transport",
        requirements=sorted({f.requirement for f in broken}),
        outcome=Outcome.FAIL,
        duration_s=round(time.monotonic() - began, 3),
        reason=stage.redact(reason),
        findings=broken,
        transcripts=stage.transcripts(),
    )


async def _probe(stage: Stage, client: ClientProcess, options: ClientCheckOptions) -> None:
    budget = ANSWER_S * options.timeout_multiplier
    start_budget = START_S * options.timeout_multiplier
    peer = await next_peer_while_running(stage.server, client, start_budget)
    if peer is None:
        raise ProbeFailed(_why("the client opened no connection to ASP_URL", client, start_budget))
    if stage.token not in (peer.query_token, peer.subprotocol_token):
        raise ProbeFailed(
            "the client did not present ASP_TOKEN (token query parameter or asp.token. subprotocol)"
        )
    probing = Scenario(PROBE_SCENARIO_ID, "probe", ("ASP-RES-005",), _nothing, "1.0", 30.0)
    ctx = ScenarioContext(probing, options, stage.server, client)
    await ctx.greet(peer, capabilities=())
    opened = await client.wait_for(lambda r: r.get("event") == "state" and r.get("state") == "open", budget)
    if opened is None:
        raise ProbeFailed(_why('the client reported no {"event": "state", "state": "open"}', client, budget))
    try:
        message = await ctx.user_message(peer, "probe")
    except ScenarioUntestable as missing:
        raise ProbeFailed(_why(str(missing), client, budget)) from None
    run = ctx.run_for(peer, message)
    expected = "".join(TOKENS[:3])
    await ctx.play(peer, run, TOKENS[:3])
    report = await ctx.reported_run(run.run_id)
    if report is None:
        raise ProbeFailed(
            _why(f'the client reported no {{"event": "run", "run_id": "{run.run_id}"}}', client, budget)
        )
    if report.get("text") != expected:
        raise ProbeFailed(f"the client reported the run's text as {report.get('text')!r}, not {expected!r}")


async def _nothing(_: ScenarioContext) -> None:
    return None


def _why(what: str, client: ClientProcess, waited: float) -> str:
    """Why the probe failed: `what` was missing, and since the client exited, or within `waited` s;
    the client's contract breaches and the last lines of its standard error."""
    if client.running:
        detail = f"{what} within {waited:.0f} s"
    else:
        detail = f"{what}: the client exited (status {client.exit_status}) without it"
    if client.problems:
        detail += f"; output lines that break the contract: {client.problems[:3]}"
    if client.stderr.strip():
        detail += f"; its standard error ends: {client.stderr_tail()}"
    return detail


def applies(scenario: Scenario, options: ClientCheckOptions) -> bool:
    """Whether a client held to `options.protocol_version` is held to what `scenario` judges."""
    return parse_version(scenario.since) <= parse_version(options.protocol_version)


async def run_scenario(scenario: Scenario, options: ClientCheckOptions, ledger: Ledger) -> CaseResult:
    """One scenario with a fresh server and client: its findings, the wire oracle's, its logs.

    The client's shutdown goes on in the background (`ledger.settle()` waits for it): the next
    scenario's client starts meanwhile, and nothing is judged before it has connected.
    """
    began = time.monotonic()

    def result(outcome: Outcome, reason: str, findings: list[Finding], stage: Stage | None) -> CaseResult:
        return CaseResult(
            case_id=scenario.id,
            title=scenario.title,
            section=scenario.section,
            requirements=list(scenario.requirements),
            outcome=outcome,
            duration_s=round(time.monotonic() - began, 3),
            reason=reason,
            findings=findings,
            transcripts=stage.transcripts() if stage else [],
        )

    if not applies(scenario, options):
        reason = f"relies on protocol {scenario.since}; the client is held to {options.protocol_version}"
        return result(Outcome.NOT_APPLICABLE, reason, [], None)
    stage = Stage(scenario.id, options)
    try:
        client = await stage.open()
    except CannotStart as problem:
        return result(Outcome.HARNESS_ERROR, str(problem), [], stage)
    ctx = ScenarioContext(scenario, options, stage.server, client)
    outcome: Outcome | None = None
    reason = ""
    budget = scenario.timeout_s * options.timeout_multiplier
    try:
        await asyncio.wait_for(scenario.body(ctx), budget)
    except ScenarioAbort as abort:
        reason = str(abort)
    except ScenarioUntestable as missing:
        outcome, reason = Outcome.UNTESTABLE, str(missing)
    except TimeoutError:
        outcome, reason = Outcome.HARNESS_ERROR, f"the scenario did not finish within {budget:.0f} s"
    except Exception:
        outcome, reason = Outcome.HARNESS_ERROR, traceback.format_exc(limit=8)
    finally:
        ledger.teardowns.append(asyncio.get_running_loop().create_task(stage.close()))
    ctx.findings.extend(wire_findings(stage.server.peers, options))
    ledger.connections += len(stage.server.peers)
    ledger.browsers += sum(1 for peer in stage.server.peers if peer.origin)
    failing = [f for f in ctx.findings if not f.passed]
    if outcome is None:
        outcome = worst([f.outcome for f in ctx.findings]) or Outcome.INFO
        reason = reason or (failing[0].message if failing else "")
    elif outcome == Outcome.UNTESTABLE and failing:
        outcome = worst([f.outcome for f in failing]) or outcome
    if client.flooded is not None:
        outcome, reason = Outcome.FAIL, f"the client flooded its standard output: {client.flooded}"
    extra = list(ctx.notes)
    if client.problems and client.flooded is None:
        extra.append(f"output lines that break the driver contract: {client.problems[:3]}")
    if outcome not in (Outcome.PASS, Outcome.INFO) and client.stderr.strip():
        extra.append(f"the client's standard error ends: {client.stderr_tail()}")
    reason = stage.redact("; ".join(part for part in [reason, *extra] if part))
    return result(outcome, reason, ctx.findings, stage)


def wire_findings(peers: list[Peer], options: ClientCheckOptions) -> list[Finding]:
    """What the always-on oracle finds wrong on every connection: frames that are not one JSON
    object in a text frame (ASP-TRN-003), messages that do not validate against client-message.json
    (ASP-ENV-004, the first five a connection), a token subprotocol without asp.v1 (ASP-AUTH-011),
    a browser (its handshake has an Origin) with its token in the URL (ASP-AUTH-008)."""
    held = {r for r in WIRE_REQUIREMENTS if requirements()[r].applies_to(options.protocol_version)}
    found: list[Finding] = []
    for peer in peers:
        where = f"connection {peer.index}"
        if "ASP-TRN-003" in held:
            found.extend(Finding("ASP-TRN-003", False, f"{where}: {p}", "oracle") for p in peer.problems)
        if "ASP-ENV-004" in held:
            found.extend(
                Finding("ASP-ENV-004", False, f"{where}: {p}", "oracle") for p in peer.schema_problems[:5]
            )
        if "ASP-AUTH-011" in held and peer.subprotocol_token is not None and SUBPROTOCOL not in peer.offered:
            offered = [o for o in peer.offered if not o.startswith("asp.token.")]
            found.append(
                Finding(
                    "ASP-AUTH-011",
                    False,
                    f"{where}: an asp.token. subprotocol offered beside {offered}, without {SUBPROTOCOL}",
                    "oracle",
                )
            )
        if "ASP-AUTH-008" in held and peer.origin and peer.query_token is not None:
            found.append(
                Finding(
                    "ASP-AUTH-008",
                    False,
                    f"{where}: a browser (Origin {peer.origin}) carried its token in the URL query",
                    "oracle",
                )
            )
    return found


def wire_summary(results: list[CaseResult], ledger: Ledger) -> CaseResult:
    """A synthetic result: the wire oracle's verdict over every connection of the run."""
    findings = [f for r in results for f in r.findings if f.source == "oracle"]
    connections, browsers = ledger.connections, ledger.browsers
    passes = {
        "ASP-TRN-003": f"every frame of {connections} connections was one JSON object in a text frame",
        "ASP-ENV-004": f"every client message of {connections} connections validated against "
        "client-message.json",
        "ASP-AUTH-011": f"no token subprotocol offered without {SUBPROTOCOL} on {connections} connections",
        "ASP-AUTH-008": f"no token in the URL on {browsers} browser connections (Origin present)"
        if browsers
        else "no connection carried an Origin header: not a browser, which ASP-AUTH-008 binds",
    }
    for requirement_id in WIRE_REQUIREMENTS:
        if not any(f.requirement == requirement_id for f in findings):
            findings.append(Finding(requirement_id, True, passes[requirement_id], "oracle"))
    failed = [f for f in findings if not f.passed]
    return CaseResult(
        case_id="oracle.client_wire",
        title="Every connection's handshake and frames follow the client's wire rules",
        section="transport",
        requirements=list(WIRE_REQUIREMENTS),
        outcome=worst([f.outcome for f in findings]) or Outcome.PASS,
        duration_s=0.0,
        reason=failed[0].message if failed else "",
        findings=findings,
    )


def _matches(item: Scenario, selector: str) -> bool:
    return (
        selector == item.id
        or item.id.startswith(selector + ".")
        or selector in item.requirements
        or selector == item.section
    )


def unknown_selectors(options: ClientCheckOptions) -> list[str]:
    """The `--cases` / `--exclude` values that name no scenario (a typo would select nothing)."""
    scenarios = all_scenarios()
    return [x for x in [*options.include, *options.exclude] if not any(_matches(s, x) for s in scenarios)]


def selected(scenarios: list[Scenario], options: ClientCheckOptions) -> list[Scenario]:
    """`--cases` / `--exclude`: scenario ids, id prefixes (a theme), requirement ids or sections."""
    chosen = [s for s in scenarios if not options.include or any(_matches(s, x) for x in options.include)]
    return [s for s in chosen if not any(_matches(s, x) for x in options.exclude)]


async def run_client_check(options: ClientCheckOptions, progress: Progress | None = None) -> Report:
    """Probe the client, then run every selected scenario; the report's target is the command. The
    report always comes back, also when the client could not be checked (then it holds the
    probe's failure as its one result).

    Raises:
        CannotStart: the command cannot be executed (a usage error).
    """
    began = time.monotonic()
    stamp = datetime.now(UTC).isoformat(timespec="seconds")

    def report(results: list[CaseResult], **extra: Any) -> Report:
        return Report(
            target=shlex.join(options.command),
            started=stamp,
            duration_s=round(time.monotonic() - began, 3),
            terms=None,
            strict=options.strict,
            results=results,
            judges="client",
            held_to=options.protocol_version,
            options={
                "timeout_multiplier": options.timeout_multiplier,
                "strict": options.strict,
                "include": options.include,
                "exclude": options.exclude,
                "protocol_version": options.protocol_version,
                "spec_version": PROTOCOL_VERSION,
                "kit_version": KIT_VERSION,
                "tolerance_early_ms": EARLY_MS,
                "tolerance_late_ms": LATE_MS * options.timeout_multiplier,
            },
            **extra,
        )

    failed = await probe(options)
    if failed is not None:
        return report([failed])
    baseline = Baseline.load(options.expected_failures) if options.expected_failures else Baseline()
    results: list[CaseResult] = []
    ledger = Ledger()
    try:
        for item in selected(all_scenarios(), options):
            outcome = baseline.apply(await run_scenario(item, options, ledger))
            results.append(outcome)
            if progress is not None:
                progress(outcome)
    finally:
        await ledger.settle()
    oracle = baseline.apply(wire_summary(results, ledger))
    return report(results, oracle=oracle, stale=baseline.unmatched([*results, oracle]))
