"""How a summary reads: rows for Locust's web UI and the terminal, the progress line, the final
tables. Pure functions over the summary (loadtests.summary); callers decide where output goes."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from loadtests.metrics import LATENCIES, PERCENTILES

LABELS = {
    "ttft_ms": "TTFT",
    "itl_ms": "ITL",
    "tpot_ms": "TPOT",
    "e2e_ms": "E2E",
    "connect_ms": "connect",
    "ping_ms": "ping",
}
_SHOWN_WHEN_ANY = {
    "turns interrupted by the end",
    "turns held back by the rate limit",
    "  time held back, s (all users)",
    "pings attempted",
    "pings failed",
}
PERCENTILE_LABELS = {"p50": "p50", "p90": "p90", "p99": "p99", "p999": "p99.9"}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}" if value < 10 else f"{value:.1f}"


def latency_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per latency figure with samples: figure, samples, p50, p90, p99, p999 (ms), definition."""
    return [
        {
            "figure": LABELS[name],
            "samples": summary["samples"][name],
            **{key: _ms(summary[name][key]) for key in PERCENTILES},
            "definition": summary["definitions"][name],
        }
        for name in LATENCIES
        if summary["samples"][name]
    ]


def count_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The counts that say what happened: name, value."""
    connections, turns, pings = summary["connections"], summary["turns"], summary["pings"]
    rows: list[tuple[str, Any]] = [
        ("connections attempted", connections["attempted"]),
        ("connections accepted", connections["accepted"]),
        ("connections failed", connections["failed"]),
        *((f"refused with {code}", n) for code, n in connections["rejected_by_code"].items()),
        *((f"dropped with {code}", n) for code, n in connections["dropped_by_code"].items()),
        ("turns attempted", turns["attempted"]),
        ("turns succeeded", turns["succeeded"]),
        ("turns failed", turns["failed"]),
        ("turns interrupted by the end", turns["interrupted"]),
        ("turns held back by the rate limit", summary.get("pacing", {}).get("turns_held", 0)),
        ("  time held back, s (all users)", summary.get("pacing", {}).get("wait_s", 0)),
        ("pings attempted", pings["attempted"]),
        ("pings failed", pings["failed"]),
        ("output tokens", summary["output_tokens"]),
        ("tokens/s", summary["tokens_per_s"]),
        ("events/s", summary["events_per_s"]),
        ("errors", summary["errors"]),
        *((f"  {kind}", n) for kind, n in summary["errors_by_kind"].items()),
        ("error rate", "-" if summary["error_rate"] is None else f"{summary['error_rate']:.4f}"),
    ]
    return [{"name": name, "value": value} for name, value in rows if value or name not in _SHOWN_WHEN_ANY]


def slo_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each SLO (slo, bound, value, verdict), then the run's verdict with its reasons."""
    verdict = summary["verdict"]
    overall = "interrupted" if verdict.get("interrupted") else "PASS" if verdict["passed"] else "FAIL"
    rows = [
        {
            "slo": item["name"],
            "bound": f"{'>=' if item['name'].endswith('_min') else '<='} {item['bound']:g}",
            "value": "no samples" if item["value"] is None else f"{item['value']:g}",
            "verdict": "pass" if item["met"] else "FAIL",
        }
        for item in verdict["slo"]
    ]
    rows.append(
        {
            "slo": "verdict",
            "bound": "",
            "value": "; ".join(verdict["reasons"]),
            "verdict": overall,
        }
    )
    return rows


def verdict_line(summary: dict[str, Any]) -> str:
    verdict = summary["verdict"]
    if verdict["passed"]:
        return "verdict: PASS"
    if verdict.get("interrupted"):
        return f"verdict: interrupted (exit {verdict['exit_code']}): " + "; ".join(verdict["reasons"])
    return f"verdict: FAIL (exit {verdict['exit_code']}): " + "; ".join(verdict["reasons"])


def progress_line(snapshot: dict[str, Any]) -> str:
    """One line of progress: elapsed, users, open connections, requests/s, turns, errors, TTFT and ITL."""
    parts = [
        f"{snapshot['elapsed_s']:6.1f}s",
        f"users {snapshot['users']}",
        f"conns {snapshot['connections_open']}",
        f"req/s {snapshot['rps']:.1f}",
        f"turns {snapshot['turns_succeeded']} ok {snapshot['turns_failed']} failed",
    ]
    if snapshot.get("pings"):
        parts.append(f"pings {snapshot['pings']}")
    parts.append(f"errors {snapshot['errors']}")
    for name in ("ttft_ms", "itl_ms"):
        figures = snapshot[name]
        parts.append(f"{LABELS[name]} p50 {_ms(figures['p50'])} p99 {_ms(figures['p99'])} ms")
    return "  ".join(parts)


def final_tables(summary: dict[str, Any]) -> Group:
    """The summary as rich tables: latency, counts, SLOs, then the verdict line."""
    latency = Table(title="latency in ms (exact; successful turns only)", title_justify="left")
    latency.add_column("figure")
    latency.add_column("samples", justify="right")
    for key in PERCENTILES:
        latency.add_column(PERCENTILE_LABELS[key], justify="right")
    for row in latency_rows(summary):
        latency.add_row(row["figure"], str(row["samples"]), *(row[key] for key in PERCENTILES))
    counts = Table(title="counts", title_justify="left", show_header=False)
    counts.add_column("name")
    counts.add_column("value", justify="right")
    for row in count_rows(summary):
        counts.add_row(row["name"], str(row["value"]))
    heading = Text(
        f"{summary['scenario']}: {summary['users']} users, {summary['duration_s']:g} s", style="bold"
    )
    parts: list[Any] = [heading, latency if latency.row_count else Text("no latency samples"), counts]
    if summary["verdict"]["slo"]:
        slo = Table(title="SLO", title_justify="left")
        for column in ("slo", "bound", "value", "verdict"):
            slo.add_column(column, justify="left" if column == "slo" else "right")
        for row in slo_rows(summary)[:-1]:
            style = "green" if row["verdict"] == "pass" else "bold red"
            slo.add_row(row["slo"], row["bound"], row["value"], Text(row["verdict"], style=style))
        parts.append(slo)
    passed = summary["verdict"]["passed"]
    parts.append(Text(verdict_line(summary), style="bold green" if passed else "bold red"))
    return Group(*parts)
