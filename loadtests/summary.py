"""The summary of a load test, its definitions, and SLO gates over it."""

from __future__ import annotations

from typing import Any

from loadtests.metrics import DEFINITIONS, Recorder


def build_summary(recorder: Recorder, *, scenario: str, users: int, duration_s: float) -> dict[str, Any]:
    counters = recorder.counters
    rejected = {key.split(":", 1)[1]: value for key, value in counters.items() if key.startswith("rejected:")}
    duration = max(duration_s, 1e-9)
    return {
        "scenario": scenario,
        "users": users,
        "duration_s": round(duration_s, 3),
        "connections": {
            "attempted": counters.get("connections_attempted", 0),
            "accepted": counters.get("connections_accepted", 0),
            "rejected_by_code": rejected,
            "dropped_by_code": {
                k.split(":", 1)[1]: v for k, v in counters.items() if k.startswith("dropped:")
            },
        },
        "turns": counters.get("turns", 0),
        "output_tokens": counters.get("output_tokens", 0),
        "ttft_ms": recorder.percentiles("ttft_ms"),
        "itl_ms": recorder.percentiles("itl_ms"),
        "tpot_ms": recorder.percentiles("tpot_ms"),
        "e2e_ms": recorder.percentiles("e2e_ms"),
        "connect_ms": recorder.percentiles("connect_ms"),
        "ping_ms": recorder.percentiles("ping_ms"),
        "samples": {name: recorder.samples(name) for name in recorder.histograms},
        "tokens_per_s": round(counters.get("output_tokens", 0) / duration, 2),
        "events_per_s": round(counters.get("events", 0) / duration, 2),
        "errors": counters.get("errors", 0),
        "definitions": DEFINITIONS,
    }


class SloError(ValueError):
    """An --slo expression that cannot be read."""


def parse_slo(text: str) -> dict[str, float]:
    """`ttft_p99_ms=500,error_rate=0.01,tokens_per_s_min=100` -> bounds by name."""
    bounds: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise SloError(f"{item!r}: expected NAME=VALUE")
        try:
            bounds[name.strip()] = float(value)
        except ValueError as exc:
            raise SloError(f"{item!r}: {value!r} is not a number") from exc
    return bounds


def slo_value(summary: dict[str, Any], name: str) -> float | None:
    """The summary figure an SLO name refers to (`ttft_p99_ms`, `error_rate`, `tokens_per_s_min`...)."""
    if name == "error_rate":
        attempts = summary["turns"] + summary["errors"] + summary["connections"]["attempted"]
        return summary["errors"] / attempts if attempts else 0.0
    base = name.removesuffix("_min")
    if base in summary and isinstance(summary[base], int | float):
        return float(summary[base])
    for metric in ("ttft", "itl", "tpot", "e2e", "connect", "ping"):
        prefix = f"{metric}_"
        if base.startswith(prefix) and base.endswith("_ms"):
            value = summary[f"{metric}_ms"].get(base[len(prefix) : -3])
            return None if value is None else float(value)
    raise SloError(f"unknown SLO {name!r}")


def breaches(summary: dict[str, Any], bounds: dict[str, float]) -> list[str]:
    """Every SLO the summary misses (a missing figure is a miss: no data, no proof)."""
    missed = []
    for name, bound in bounds.items():
        value = slo_value(summary, name)
        if value is None:
            missed.append(f"{name}: no samples")
        elif name.endswith("_min") and value < bound:
            missed.append(f"{name}: {value} < {bound}")
        elif not name.endswith("_min") and value > bound:
            missed.append(f"{name}: {value} > {bound}")
    return missed
