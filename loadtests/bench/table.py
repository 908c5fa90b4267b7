"""`asp bench` results as a Markdown table: each figure's median [min-max], generator CPU, load; a
figure the run can only bound (results["bounds"]) shown as one (">= 400") with why."""

from __future__ import annotations

from typing import Any


def shown_figure(value: float | None) -> str:
    """A figure as `asp bench` shows it, in its table and in its target lines alike (the JSON keeps
    3 decimals): a whole number as it is, with thousands separated (400, 1,200); otherwise 3
    significant digits under 10 (1.07), one decimal under 1,000 (881.1), none from 1,000 (1,234);
    "-" for a figure with nothing measured (null in the JSON)."""
    if value is None:
        return "-"
    if isinstance(value, int):  # a count (streams, pongs): no ".0" to read as a measured fraction
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


BOUND_SIGNS = {"lower": ">= ", "upper": "<= ", "none": "not determined: "}


def bounded(text: str, bound: str) -> str:
    """`text` (a figure as measured) marked with what it shows of the true figure (see run.Bound)."""
    return BOUND_SIGNS.get(bound, "") + text


def _why(results: dict[str, Any], name: str) -> tuple[str, str]:
    """The bound of figure `name` in `results` ("exact" when not bounded) and why, as a suffix."""
    found = results.get("bounds", {}).get(name)
    return (found["bound"], f" ({found['why']})") if found else ("exact", "")


def _spread(figure: dict[str, Any]) -> str:
    return f"{shown_figure(figure['median'])} [{shown_figure(figure['min'])}-{shown_figure(figure['max'])}]"


def _cpu(figure: dict[str, Any], name: str) -> str:
    cpu = figure.get("generator_cpu")
    if not cpu:
        return "in process" if name.startswith(("framework", "bare_framework", "ttft_ratio_in")) else "-"
    return f"{max(cpu):.2f}" + (" GENERATOR-BOUND" if figure.get("generator_bound") else "")


def _load(figure: dict[str, Any]) -> str:
    load = figure.get("load_avg") or []
    return "-" if not load else f"{min(load):.1f}-{max(load):.1f}"


def _row(name: str, figure: dict[str, Any]) -> str:
    return f"| {name} | {_spread(figure)} | {_cpu(figure, name)} | {_load(figure)} |"


def _rows(source: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    """A row for each of `names` that `source` measured, in that order."""
    return [_row(name, source[name]) for name in names if name in source]


def table(results: dict[str, Any]) -> str:
    """The figures of one run: median [min-max] over its repeats, the busiest generator process's
    CPU (cores; "in process" for the framework floors) and the 1-minute load average range."""
    lines = ["| figure | median [min-max] | generator CPU | load avg |", "|---|---|---|---|"]
    lines += _rows(
        results,
        (
            "server_vs_framework",
            "ttft_ratio",
            "server_tokens_per_s",
            "framework_deltas_per_s",
            "server_ttft_ms",
            "served_framework_ttft_ms",
            "ttft_ratio_in_process",
            "framework_ttft_ms",
            "server_cpu_ms_per_1000_tokens",
            "server_events_per_s",
            "served_framework_tokens_per_s",
            "served_framework_cpu_ms_per_1000_tokens",
            "transport_events_per_s",
            "memory_ratio",
            "server_kib_per_connection",
            "bare_kib_per_connection",
        ),
    )
    for name in ("max_streams_at_50tps", "framework_max_streams_at_50tps"):
        if name in results:
            bound, why = _why(results, name)
            lines.append(f"| {name} | {bounded(shown_figure(results[name]), bound)}{why} | | |")
    if "max_streams_vs_framework" in results:
        bound, why = _why(results, "max_streams_vs_framework")
        shown = bounded(shown_figure(results["max_streams_vs_framework"]), bound)
        lines.append(f"| max_streams_vs_framework | {shown}{why} | | |")
    lines += _sweep_rows(results.get("sweep", []), "")
    lines += _sweep_rows(results.get("framework_sweep", []), "framework: ")
    scale = results.get("connection_scale")
    if scale:
        for kind in [kind for kind in ("server", "redis_server", "bare") if kind in scale]:
            for name in ("connects_per_s", "connect_p99_ms", "pong_p50_ms", "pong_p99_ms", "pongs_missed"):
                lines.append(_row(f"{kind} {name} at {scale['connections']} connections", scale[kind][name]))
    if "scale_out" in results:
        lines.extend(_scale_out(results["scale_out"], results))
    return "\n".join(lines)


def _sweep_rows(levels: list[dict[str, Any]], label: str) -> list[str]:
    """ITL p50 and p99 rows of each level of a sweep, the server's and the machine's CPU beside p99."""
    lines = []
    for level in levels:
        streams = level["streams"]
        lines.append(_row(f"{label}ITL p50 ms at {streams} streams", level["itl_p50_ms"]))
        cpu = (
            f" (server CPU {level['server_cpu']:.2f}, machine {level['machine_cpu']:.2f})"
            if "server_cpu" in level
            else ""
        )
        lines.append(_row(f"{label}ITL p99 ms at {streams} streams{cpu}", level["itl_p99_ms"]))
    return lines


def _scale_out(section: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """The scale-out section's rows: its ratios and their parts, then the workers' sweep, each level
    with the server's, Redis's and all generator processes' CPU (cores) in its name."""
    lines = [f"| **scale-out** (Redis {section['redis']}, {section['database']}) | | | |"]
    lines += _rows(
        section,
        (
            "redis_server_vs_framework",
            "redis_server_tokens_per_s",
            "cpu_per_1000_tokens_ratio",
            "redis_server_cpu_ms_per_1000_tokens",
            "redis_ttft_ratio",
            "redis_server_ttft_ms",
            "redis_ttft_ratio_in_process",
            "redis_memory_ratio",
            "redis_kib_per_connection",
        ),
    )
    workers = bounded(
        shown_figure(section["workers_max_streams_at_50tps"]),
        _why(results, "workers_max_streams_at_50tps")[0],
    )
    embedded = bounded(
        shown_figure(section["embedded_max_streams_at_50tps"]), _why(results, "max_streams_at_50tps")[0]
    )
    bound, why = _why(results, "workers_vs_embedded")
    lines.append(
        f"| workers_vs_embedded | {bounded(shown_figure(section['workers_vs_embedded']), bound)} "
        f"({workers} / {embedded} streams){why} | | |"
    )
    full = section.get("machine_full_at")
    if full:
        lines.append(
            f"| the machine was full at {', '.join(map(str, full))} streams of the workers' sweep: "
            "workers_vs_embedded measures this machine as much as the workers | | | |"
        )
    for level in section["workers_sweep"]:
        cpu = (
            f"server CPU {level['server_cpu']:.2f}, Redis {level.get('redis_cpu', 0):.2f}, "
            f"all generators {max(level['generator_cpu_total']):.2f}, machine {level['machine_cpu']:.2f}"
        )
        lines.append(
            _row(
                f"--workers {section['workers']}: ITL p99 ms at {level['streams']} streams ({cpu})",
                level["itl_p99_ms"],
            )
        )
    return lines
