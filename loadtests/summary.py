"""The summary of a load test, its SLO gates and its verdict: one home for "did this run pass".

`build_summary` turns a Recorder into the summary (JSON-able, the same for the headless summary
file, the web UI and the final table); `judge` is the only function that decides pass or fail and
the exit code, from the summary and the `--slo` bounds.
"""

from __future__ import annotations

import re
from typing import Any

from loadtests.metrics import DEFINITIONS, LATENCIES, PERCENTILES, Recorder

EXIT_PASS, EXIT_FAILED, EXIT_SLO = 0, 1, 3
# The figure a scenario exists to measure: with no sample of it, nothing was measured.
SCENARIO_FIGURE = {"throughput": "e2e_ms", "connections": "connect_ms", "soak": "ping_ms"}
NOTHING_MEASURED = {
    "e2e_ms": "no successful turn",
    "connect_ms": "no accepted connection",
    "ping_ms": "no answered ping",
}
RATES = ("tokens_per_s", "events_per_s")
_LATENCY_SLO = re.compile(
    r"^(?P<metric>{})_(?P<pct>{})_ms$".format(
        "|".join(name.removesuffix("_ms") for name in LATENCIES), "|".join(PERCENTILES)
    )
)
SLO_FORMS = (
    "error_rate",
    *(f"{rate}_min" for rate in RATES),
    "{" + ",".join(n.removesuffix("_ms") for n in LATENCIES) + "}_{" + ",".join(PERCENTILES) + "}_ms",
)


class SloError(ValueError):
    """An --slo expression that cannot be read; the message is one line."""


def _prefixed(counters: dict[str, int], prefix: str) -> dict[str, int]:
    return {key[len(prefix) :]: value for key, value in sorted(counters.items()) if key.startswith(prefix)}


def build_summary(
    recorder: Recorder,
    *,
    scenario: str,
    users: int,
    duration_s: float,
    expected_rejections: int = 0,
    bounds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The summary of everything `recorder` holds, with its SLO results and verdict.

    `expected_rejections`: how many of the 1013 refusals counted as `rejected_expected:1013` are the
    expected outcome (the connections scenario's attempts beyond the limit); more are errors.
    Durations in seconds, latencies in ms.
    """
    counters = recorder.counters
    errors_by_kind = _prefixed(counters, "error:")
    connections_failed = counters.get("connections_failed", 0)
    excess = max(0, counters.get("rejected_expected:1013", 0) - expected_rejections)
    if excess:
        errors_by_kind["refused:1013"] = errors_by_kind.get("refused:1013", 0) + excess
        connections_failed += excess
    turns_succeeded, turns_failed = counters.get("turns_succeeded", 0), counters.get("turns_failed", 0)
    pings_succeeded, pings_failed = counters.get("pings_succeeded", 0), counters.get("pings_failed", 0)
    errors = turns_failed + pings_failed + connections_failed
    attempts = turns_succeeded + turns_failed + pings_succeeded + pings_failed + connections_failed
    duration = max(duration_s, 1e-9)
    summary: dict[str, Any] = {
        "scenario": scenario,
        "users": users,
        "duration_s": round(duration_s, 3),
        "connections": {
            "attempted": counters.get("connections_attempted", 0),
            "accepted": counters.get("connections_accepted", 0),
            "failed": connections_failed,
            "rejected_by_code": _prefixed(counters, "rejected:"),
            "dropped_by_code": _prefixed(counters, "dropped:"),
        },
        "turns": {
            "attempted": turns_succeeded + turns_failed,
            "succeeded": turns_succeeded,
            "failed": turns_failed,
            "interrupted": counters.get("turns_interrupted", 0),
        },
        "pings": {"attempted": pings_succeeded + pings_failed, "failed": pings_failed},
        # turns held back under the server's announced rate limit, and for how long (all users)
        "pacing": {
            "turns_held": counters.get("turns_paced", 0),
            "wait_s": round(counters.get("pacing_wait_ms", 0) / 1000, 3),
        },
        "errors": errors,
        "errors_by_kind": errors_by_kind,
        "error_rate": round(errors / attempts, 6) if attempts else None,
        "output_tokens": counters.get("output_tokens", 0),
        **{name: recorder.percentiles(name) for name in LATENCIES},
        "samples": {name: recorder.samples(name) for name in LATENCIES},
        "tokens_per_s": round(counters.get("output_tokens", 0) / duration, 2),
        "events_per_s": round(counters.get("events", 0) / duration, 2),
        "definitions": DEFINITIONS,
    }
    summary["verdict"] = judge(summary, bounds or {})
    return summary


def parse_slo(text: str) -> dict[str, float]:
    """`ttft_p99_ms=500,error_rate=0.01,tokens_per_s_min=100` -> bounds by name.

    Raises SloError (one line) for an item that is not NAME=NUMBER or a name that is not one of
    SLO_FORMS, so a misspelt gate fails before the test, not after it.
    """
    bounds: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep:
            raise SloError(f"--slo {item!r}: expected NAME=VALUE")
        if not _known(name):
            raise SloError(f"--slo: unknown name {name!r} (known: {', '.join(SLO_FORMS)})")
        try:
            bounds[name] = float(value)
        except ValueError:
            raise SloError(f"--slo {item!r}: {value!r} is not a number") from None
    return bounds


def _known(name: str) -> bool:
    return name == "error_rate" or name in {f"{r}_min" for r in RATES} or bool(_LATENCY_SLO.match(name))


def slo_value(summary: dict[str, Any], name: str) -> float | None:
    """The summary figure an SLO name refers to; None when there is no sample of it."""
    if name == "error_rate":
        rate = summary["error_rate"]
        return None if rate is None else float(rate)
    if name.endswith("_min"):
        return float(summary[name.removesuffix("_min")])
    match = _LATENCY_SLO.match(name)
    if not match:
        raise SloError(f"--slo: unknown name {name!r}")
    value = summary[f"{match['metric']}_ms"][match["pct"]]
    return None if value is None else float(value)


def judge(summary: dict[str, Any], bounds: dict[str, float]) -> dict[str, Any]:
    """Pass or fail, the exit code and every reason; each SLO with its value.

    Fails with exit 1 when nothing was measured or when there were errors and no `error_rate`
    bound allows them (an error budget is opt-in); with exit 3 when an SLO is missed (a missing
    figure is a miss: no data, no proof). Returns {"passed", "exit_code", "reasons", "slo"}.
    """
    reasons: list[str] = []
    code = EXIT_PASS
    figure = SCENARIO_FIGURE.get(summary["scenario"])
    figures = [figure] if figure else list(NOTHING_MEASURED)
    if not any(summary["samples"].get(name) for name in figures):
        reasons.append("nothing measured: " + " and ".join(NOTHING_MEASURED[name] for name in figures))
        code = EXIT_FAILED
    if summary["errors"] and "error_rate" not in bounds:
        kinds = ", ".join(f"{kind} {count}" for kind, count in summary["errors_by_kind"].items())
        errors = f"{summary['errors']} error{'' if summary['errors'] == 1 else 's'}"
        reasons.append(f"{errors} ({kinds}); no --slo error_rate allows any")
        code = EXIT_FAILED
    slo = []
    for name, bound in bounds.items():
        value = slo_value(summary, name)
        minimum = name.endswith("_min")
        met = value is not None and (value >= bound if minimum else value <= bound)
        slo.append({"name": name, "bound": bound, "value": value, "met": met})
        if not met:
            reasons.append(
                f"SLO {name}: no samples"
                if value is None
                else f"SLO {name}: {value:g} {'<' if minimum else '>'} {bound:g}"
            )
            code = code or EXIT_SLO
    return {"passed": code == EXIT_PASS, "exit_code": code, "reasons": reasons, "slo": slo}


def interrupt(summary: dict[str, Any], signal_name: str, exit_code: int, planned_s: float) -> None:
    """Judge `summary` "interrupted" (in place): a run stopped by a signal is never a pass, whatever
    it measured; its other reasons stay. `exit_code` is 128 + the signal (130 SIGINT, 143 SIGTERM)."""
    verdict = summary["verdict"]
    reason = f"interrupted by {signal_name} after {summary['duration_s']:g} s of {planned_s:g} s"
    summary["verdict"] = {
        **verdict,
        "passed": False,
        "exit_code": exit_code,
        "interrupted": True,
        "signal": signal_name,
        "reasons": [reason, *verdict["reasons"]],
    }
