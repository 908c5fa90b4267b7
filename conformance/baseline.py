"""Expected failures: a baseline of known failures; an entry that now passes is stale (MCP-style)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from conformance.options import UsageError
from conformance.outcomes import CaseResult, Outcome
from spec import jsondepth


@dataclass
class Baseline:
    """Case ids (or requirement ids) expected to fail, each with an optional reason.

    The file is JSON (`{"CASE_OR_REQUIREMENT": "why"}` or a list of ids) or text (one id a line,
    `# comments`).
    """

    entries: dict[str, str] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, path: Path) -> Baseline:
        """The baseline in `path`.

        Raises:
            UsageError: the file cannot be read, is not UTF-8 text, or is JSON of another shape
                (`--expected-failures` named in the message).
        """
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read --expected-failures {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise UsageError(f"--expected-failures {path} is not UTF-8 text") from None
        try:
            data = jsondepth.loads(text)
        except (ValueError, RecursionError):
            ids = [line.split("#")[0].strip() for line in text.splitlines()]
            return cls({i: "" for i in ids if i})
        if isinstance(data, list):
            return cls({str(i): "" for i in data})
        if isinstance(data, dict):
            return cls({str(k): str(v) for k, v in data.items()})
        raise UsageError(
            f"--expected-failures {path} is JSON but neither a list of ids nor an object of id: reason"
        )

    def apply(self, result: CaseResult) -> CaseResult:
        """A case listed by id, or failing only requirements listed, is an expected failure."""
        failing = result.outcome in (Outcome.FAIL, Outcome.WARNING)
        if result.case_id in self.entries:
            self.used.add(result.case_id)
            if failing:
                result.outcome = Outcome.EXPECTED_FAILURE
                result.reason = f"expected failure: {result.reason}"
            elif result.outcome == Outcome.PASS:
                result.outcome = Outcome.STALE_BASELINE
                result.reason = "listed as an expected failure but passed: remove it from the baseline"
            return result
        failed = result.failed_requirements
        if failing and failed and all(r in self.entries for r in failed):
            self.used.update(failed)
            result.outcome = Outcome.EXPECTED_FAILURE
            result.reason = f"expected failure ({', '.join(failed)}): {result.reason}"
        return result

    def unmatched(self, results: list[CaseResult]) -> list[CaseResult]:
        """Entries that no failing case used are stale: the baseline must shrink as the server improves."""
        stale = []
        for entry, why in self.entries.items():
            if entry in self.used:
                continue
            stale.append(
                CaseResult(
                    case_id=f"baseline.{entry}",
                    title=f"baseline entry {entry}",
                    section="baseline",
                    requirements=[],
                    outcome=Outcome.STALE_BASELINE,
                    duration_s=0.0,
                    reason=f"no case matched this expected failure{': ' + why if why else ''}",
                )
            )
        return stale
