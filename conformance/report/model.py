"""The Report model: what one check found, and the verdicts derived from it.

Writers (`conformance.report.writers`) are pure functions of this model; the exit code, the
compliance levels, the per-requirement table and the problems (failing requirements) are
computed here and nowhere else. Whether a result fails the run is `conformance.outcomes.fails`
under the report's `threshold` (`--fail-on`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conformance.gating import applies, since
from conformance.outcomes import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    FAILS_A_LEVEL,
    LEAVES_A_LEVEL_UNPROVEN,
    LEVEL_SEVERITY,
    SEVERITIES,
    CaseResult,
    Outcome,
    fails,
    severity,
    worst,
)
from conformance.registry import ORACLE_REQUIREMENTS, all_cases
from conformance.terms import ServerTerms
from spec.catalog import compliance_levels, level_requirements, requirements

KIT_VERSION = "0.2.0"


# Outcomes a case passes on to every requirement it cites, whatever its findings say.
_PASSED_ON = (
    Outcome.NOT_APPLICABLE,
    Outcome.UNTESTABLE,
    Outcome.HARNESS_ERROR,
    Outcome.EXPECTED_FAILURE,
    Outcome.STALE_BASELINE,
)
# The compliance levels, lowest first, as requirements.yaml defines them.
LEVELS = tuple(compliance_levels())
# The reason of a requirement whose cases --cases / --exclude left out (not untestable: not asked).
NOT_SELECTED = "not selected"
# A report judges one party's requirements; the other party's are judged by another command.
JUDGED_ELSEWHERE = {
    "client": "binds clients: `asp check-client` judges it",
    "server": "binds servers: `asp check` judges it",
}


@dataclass(frozen=True)
class Level:
    """A compliance level's verdict: "yes", "no" or "not proven" (untested requirements remain).

    `untestable` are requirements a case ran for but could not prove; `not_selected` those no case
    ran for because `selection` (`--cases` / `--exclude`) left their cases out.
    """

    verdict: str
    failed: list[str] = field(default_factory=list)
    untestable: list[str] = field(default_factory=list)
    not_selected: list[str] = field(default_factory=list)
    selection: str = ""

    def describe(self) -> str:
        if self.verdict == "no":
            return f"no ({len(self.failed)} failed: {', '.join(self.failed)})"
        if self.verdict == "not proven":
            parts = (
                [f"{len(self.untestable)} untestable: {', '.join(self.untestable)}"]
                if self.untestable
                else []
            )
            if self.not_selected:
                parts.append(f"{len(self.not_selected)} not selected by {self.selection}")
            return f"not proven ({'; '.join(parts)})"
        return "yes"

    def as_dict(self) -> dict[str, Any]:
        shown = {"not_selected": self.not_selected} if self.not_selected else {}
        return {"verdict": self.verdict, "failed": self.failed, "untestable": self.untestable, **shown}


@dataclass(frozen=True)
class Problem:
    """One thing to fix, as SARIF, GitHub annotations and the job summary name it.

    `rule` is the requirement ID broken, or None for the kit's own trouble (a harness error, a stale
    baseline entry); `severity` is a value of `conformance.outcomes.SEVERITIES` (a requirement's
    from its MUST / SHOULD / MAY level); `messages` are the distinct findings, `cases` the case ids
    that saw them; `expected` says why a baseline entry expects it (then it never fails the run).
    """

    rule: str | None
    severity: str
    title: str
    messages: list[str]
    cases: list[str]
    expected: str | None = None

    def text(self, limit: int = 5) -> str:
        """One paragraph: the cases, then at most `limit` messages."""
        shown = self.messages[:limit]
        more = f" (and {len(self.messages) - limit} more)" if len(self.messages) > limit else ""
        where = f"in {', '.join(self.cases)}: " if self.cases else ""
        return where + "; ".join(shown) + more


@dataclass
class Report:
    """One check of one server (`asp check`) or of one client (`asp check-client`).

    `results` are the cases (one per registered case that was selected); `oracle` is the
    always-on oracle's verdict over every frame of every case (its violations also fail the case
    that saw them); `stale` are baseline entries no case used. `usage_error` says why the check
    could not be made with what it was given (refused credentials): exit 2. `judges` is the party
    whose requirements the report holds verdicts on ("server" or "client"); a client report has
    no `terms`, and `held_to` is the protocol version the client was held to.
    """

    target: str
    started: str
    duration_s: float
    terms: ServerTerms | None
    strict: bool = False
    results: list[CaseResult] = field(default_factory=list)
    oracle: CaseResult | None = None
    stale: list[CaseResult] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    usage_error: str | None = None
    judges: str = "server"
    held_to: str | None = None
    fail_on: str | None = None

    @property
    def threshold(self) -> str:
        """The least severity that fails the run: `fail_on`, else "warning" under `strict`, else "error"."""
        return self.fail_on or ("warning" if self.strict else "error")

    def fails(self, result: CaseResult) -> bool:
        """Whether `result` fails this run (the one rule of the exit code, JUnit, SARIF, GitHub)."""
        return fails(result, self.threshold)

    @property
    def everything(self) -> list[CaseResult]:
        """Cases, then the oracle, then stale baseline entries: every result that has a verdict."""
        return [*self.results, *([self.oracle] if self.oracle else []), *self.stale]

    @property
    def protocol_version(self) -> str | None:
        """The version requirements are gated by: the server's announced one, or the client's."""
        return self.terms.protocol_version if self.terms else self.held_to

    def _covered(self) -> set[str]:
        """The judged party's requirements some case or scenario of the kit cites."""
        if self.judges == "client":
            from conformance.client.scenarios import WIRE_REQUIREMENTS, all_scenarios

            return {r for s in all_scenarios() for r in s.requirements} | set(WIRE_REQUIREMENTS)
        return {r for case in all_cases() for r in case.requirements} | set(ORACLE_REQUIREMENTS)

    def selection(self) -> str:
        """The `--cases` / `--exclude` selectors of the run as options (`--cases auth`), or "" when
        every case was selected (and the checked party was reached: else nothing ran at all)."""
        if self.judges == "server" and self.terms is None:
            return ""
        chosen = [
            f"{flag} {','.join(values)}"
            for flag, values in (
                ("--cases", self.options.get("include")),
                ("--exclude", self.options.get("exclude")),
            )
            if values
        ]
        return " ".join(chosen)

    def requirement_results(self) -> dict[str, dict[str, Any]]:
        """Per catalog requirement: its outcome across the results that cite it (or why none could)."""
        table: dict[str, dict[str, Any]] = {}
        version = self.protocol_version
        covered = self._covered()
        party = "the server announces" if self.judges == "server" else "the client is held to"
        for requirement in requirements().values():
            if requirement.binds != self.judges:
                table[requirement.id] = {
                    "outcome": Outcome.UNTESTABLE.value,
                    "cases": [],
                    "reason": JUDGED_ELSEWHERE[requirement.binds],
                }
                continue
            if not requirement.testable:
                table[requirement.id] = {
                    "outcome": Outcome.UNTESTABLE.value,
                    "cases": [],
                    "reason": requirement.reason or "",
                }
                continue
            if version is not None and not applies(requirement.id, version):
                table[requirement.id] = {
                    "outcome": Outcome.NOT_APPLICABLE.value,
                    "cases": [],
                    "reason": f"introduced in {since(requirement.id)}; {party} {version}",
                }
                continue
            outcomes: list[Outcome] = []
            cases: list[str] = []
            for result in [*self.results, *([self.oracle] if self.oracle else [])]:
                judged = [f.outcome for f in result.findings if f.requirement == requirement.id]
                if requirement.id not in result.requirements and not judged:
                    continue
                cases.append(result.case_id)
                if result.outcome in _PASSED_ON:
                    outcomes.append(result.outcome)
                elif judged:
                    outcomes.append(worst(judged) or Outcome.PASS)
                elif result.outcome in (Outcome.PASS, Outcome.INFO):
                    outcomes.append(Outcome.PASS)
            outcome = worst(outcomes)
            if outcome is None:
                if requirement.id not in covered:
                    reason = "no case of this kit covers it yet"
                elif self.selection():
                    reason = f"{NOT_SELECTED} by {self.selection()}"
                else:
                    reason = "no case ran for it"
            elif outcome == Outcome.PASS:
                reason = ""
            else:
                cited = [r for r in self.results if r.case_id in cases and r.reason]
                reason = next((r.reason for r in cited if r.outcome == outcome), "") or (
                    cited[0].reason if cited else ""
                )
            table[requirement.id] = {
                "outcome": (outcome or Outcome.UNTESTABLE).value,
                "cases": cases,
                "reason": reason,
            }
        return table

    def compliance(self) -> dict[str, Level]:
        """Each level of requirements.yaml `compliance_levels` (PROTOCOL.md section 18), lowest first.

        A level is "yes" only when every requirement it needs passed (or does not apply: a
        capability not declared, a requirement newer than the server's version); "no" when one
        failed (`outcomes.FAILS_A_LEVEL`) or a capability it needs is not declared; else "not
        proven", naming the requirements no case could test (`outcomes.LEAVES_A_LEVEL_UNPROVEN`).
        A client report has no terms: it declares nothing and is held to no `declares`.
        """
        table = self.requirement_results()
        declared = self.terms.capabilities if self.terms else frozenset()
        judged = [r for r in requirements().values() if r.binds == self.judges and r.testable]

        selection = self.selection()

        def judge(ids: list[str], extra_failure: str | None = None) -> Level:
            failed = [i for i in ids if table[i]["outcome"] in FAILS_A_LEVEL]
            unproven = [i for i in ids if table[i]["outcome"] in LEAVES_A_LEVEL_UNPROVEN]
            skipped = [i for i in unproven if table[i]["reason"].startswith(NOT_SELECTED)]
            unproven = [i for i in unproven if i not in skipped]
            if extra_failure:
                failed.append(extra_failure)
            if failed:
                return Level("no", failed, unproven, skipped, selection)
            if unproven or skipped:
                return Level("not proven", [], unproven, skipped, selection)
            return Level("yes")

        levels: dict[str, Level] = {}
        for name, level in compliance_levels().items():
            missing = sorted(set(level.declares) - declared) if self.terms else []
            levels[name] = judge(
                level_requirements(name, judged, declared),
                f"capabilities not declared: {', '.join(missing)}" if missing else None,
            )
        return levels

    def counts(self) -> dict[str, int]:
        """Cases per outcome (the oracle and stale baseline entries are not cases)."""
        counted: dict[str, int] = {outcome.value: 0 for outcome in Outcome}
        for result in self.results:
            counted[result.outcome.value] += 1
        return counted

    def blocking(self) -> list[CaseResult]:
        """The results that fail the run."""
        return [r for r in self.everything if self.fails(r)]

    def problems(self) -> list[Problem]:
        """Every failing requirement (fail, warning or expected failure), worst first, then, with no
        requirement (`rule` None), the kit's own errors, stale baseline entries and failed results
        without a failing finding (a probe that could not connect): one `Problem` each."""
        catalog = requirements()
        judged = [*self.results, *([self.oracle] if self.oracle else [])]
        found: list[Problem] = []
        for rid, entry in self.requirement_results().items():
            if entry["outcome"] not in ("fail", "warning", "expected_failure"):
                continue
            messages = list(
                dict.fromkeys(
                    f.message for r in judged for f in r.findings if f.requirement == rid and not f.passed
                )
            )
            if entry["outcome"] == "expected_failure" and not messages:
                continue  # cited by an expected failure, but not what failed in it
            expected = [
                r for r in judged if r.case_id in entry["cases"] and r.outcome == Outcome.EXPECTED_FAILURE
            ]
            strength = catalog[rid].level
            found.append(
                Problem(
                    rule=rid,
                    severity=LEVEL_SEVERITY[strength],
                    title=f"{rid} ({strength}): {catalog[rid].statement}",
                    messages=messages or [entry["reason"] or f"{rid} not met"],
                    cases=[
                        r.case_id
                        for r in judged
                        if any(f.requirement == rid and not f.passed for f in r.findings)
                    ]
                    or entry["cases"],
                    expected=(expected[0].reason or "listed in the baseline")
                    if entry["outcome"] == "expected_failure" and expected
                    else None,
                )
            )
        found.sort(key=lambda p: (p.expected is not None, SEVERITIES.index(p.severity)))
        for result in self.everything:
            level = severity(result)
            if result.outcome == Outcome.HARNESS_ERROR:
                title = f"the kit failed in {result.case_id} (no verdict on the {self.judges})"
            elif result.outcome == Outcome.STALE_BASELINE:
                title = f"stale baseline entry {result.case_id}"
            elif level is not None and not result.failed_requirements:
                title = f"{result.case_id} {result.outcome.value}"  # no finding: the probe could not connect
            else:
                continue
            found.append(Problem(None, level or "error", title, [result.reason or title], [result.case_id]))
        return found

    def exit_code(self) -> int:
        """0 no applicable case failed (untestable ones do not fail the run); 1 a failure (a server
        fault, a stale baseline entry, an unreachable server); 2 the check could not be made as asked
        (refused credentials) or only the kit's own errors stand in the way."""
        if self.usage_error:
            return EXIT_USAGE
        bad = self.blocking()
        if not bad:
            return EXIT_OK
        if all(r.outcome == Outcome.HARNESS_ERROR for r in bad):
            return EXIT_USAGE
        return EXIT_FAILED


def log_label(frames: list[dict[str, Any]], number: int) -> str:
    """What transcript `number` (from 1) of a result is: a WebSocket connection, or (in a client
    report, its last log) the client's standard input and output, whose frames are `stdin ...` /
    `stdout ...` texts and the process's exit."""
    texts = [str(f["text"]) for f in frames if f.get("text") is not None]
    stdio = texts and all(t.startswith(("stdin ", "stdout ", "stderr ")) for t in texts)
    if stdio and not any(f.get("direction") == "open" for f in frames):
        return "the client's standard input and output"
    return f"connection {number}"
