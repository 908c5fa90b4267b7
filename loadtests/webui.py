"""The streaming figures in Locust's own web UI, through its extension points.

Locust's web UI is a Flask app (`web_ui.app`) whose page renders `template_args`; its
`extended_tabs` / `extended_tables` add tabs whose rows come from `extended_stats` in the
`/stats/requests` JSON the page polls (Locust's `examples/extend_web_ui.py`). Three tabs (exact
latency percentiles with ITL and TPOT, counts and errors, the SLOs with the verdict) and a JSON
route, `/asp/summary`, with the whole summary as the headless run writes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from loadtests.metrics import PERCENTILES
from loadtests.report import PERCENTILE_LABELS, count_rows, latency_rows, slo_rows

SUMMARY_ROUTE = "/asp/summary"
TABS = [
    {"title": "ASP latency", "key": "asp-latency"},
    {"title": "ASP counts", "key": "asp-counts"},
    {"title": "ASP SLO", "key": "asp-slo"},
]
TABLES = [
    {
        "key": "asp-latency",
        "structure": [
            {"key": "figure", "title": "Figure"},
            {"key": "samples", "title": "Samples"},
            *({"key": key, "title": f"{PERCENTILE_LABELS[key]} (ms)"} for key in PERCENTILES),
            {"key": "definition", "title": "Definition"},
        ],
    },
    {
        "key": "asp-counts",
        "structure": [{"key": "name", "title": "Count"}, {"key": "value", "title": "Value"}],
    },
    {
        "key": "asp-slo",
        "structure": [
            {"key": "slo", "title": "SLO"},
            {"key": "bound", "title": "Bound"},
            {"key": "value", "title": "Value"},
            {"key": "verdict", "title": "Verdict"},
        ],
    },
]


def extended_stats(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of the three tabs, as the page reads them from `/stats/requests`."""
    return [
        {"key": "asp-latency", "data": latency_rows(summary)},
        {"key": "asp-counts", "data": count_rows(summary)},
        {"key": "asp-slo", "data": slo_rows(summary)},
    ]


def install(web_ui: Any, summary: Callable[[], dict[str, Any]]) -> None:
    """Add the tabs and the summary route to a Locust `WebUI`; call from an `init` listener.

    `summary` returns the current summary (loadtests.summary.build_summary) each time it is called.
    """
    from flask import Response, request

    web_ui.template_args.update(extended_tabs=TABS, extended_tables=TABLES)

    def asp_summary() -> Response:
        return Response(json.dumps(summary()), mimetype="application/json")

    def add_extended_stats(response: Response) -> Response:
        if not request.path.endswith("/stats/requests") or response.status_code != 200:
            return response
        body = response.get_json(silent=True)
        if isinstance(body, dict):
            body["extended_stats"] = extended_stats(summary())
            response.set_data(json.dumps(body))
        return response

    web_ui.app.add_url_rule(SUMMARY_ROUTE, "asp_summary", web_ui.auth_required_if_enabled(asp_summary))
    web_ui.app.after_request(add_extended_stats)
