"""`asp load` against small broken servers: each fault is an error, counted, and never a figure.

Every run is a few seconds with one user; the assertions are counts and presence, never latency.
"""

from __future__ import annotations

import pytest

from tests.loadtests.asp_load import asp_load, assert_errors_add_up, assert_nothing_fabricated
from tests.loadtests.servers import no_server, running

QUICK = ["--users", "1", "--spawn-rate", "1", "--run-time", "3s", "--think-min", "0.1", "--think-max", "0.2"]
QUICK += ["--event-timeout", "1", "--jwt-secret", "panel-secret", "--quiet"]


@pytest.mark.parametrize(
    ("server", "kind"),
    [
        ("stall_after_one_delta", "stalled"),
        ("non_json_frame", "bad_frame"),
        ("every_run_fails", "run_failed:model_error"),
        ("foreign_run", "foreign_event"),
    ],
)
def test_a_broken_run_is_an_error_of_its_kind_and_never_a_latency_sample(server, kind, tmp_path):
    with running(server) as url:
        result, summary = asp_load(url, tmp_path, *QUICK, "--prompt", "asp-fixture:slow 5 200")
    assert result.returncode == 1, result.stderr[-2000:]
    turns = summary["turns"]
    assert turns["attempted"] >= 1 and turns["succeeded"] == 0
    assert summary["errors"] == turns["failed"] == turns["attempted"]
    assert summary["errors_by_kind"] == {kind: turns["attempted"]}
    assert summary["error_rate"] == 1.0
    assert_nothing_fabricated(summary)
    assert_errors_add_up(summary)
    verdict = [line for line in result.stdout.splitlines() if line.startswith("verdict: FAIL")]
    assert len(verdict) == 1 and "nothing measured" in verdict[0]  # one line, also when piped
    assert verdict[0].endswith("no --slo error_rate allows any")
    errors = summary["errors"]
    assert f"{errors} error{'' if errors == 1 else 's'} (" in verdict[0]


def test_a_stalled_run_is_counted_even_with_an_error_budget(tmp_path):
    with running("stall_after_one_delta") as url:
        result, summary = asp_load(url, tmp_path, *QUICK, "--slo", "error_rate=0.01")
    assert result.returncode == 1
    assert summary["errors_by_kind"]["stalled"] >= 1
    assert {"name": "error_rate", "bound": 0.01, "value": 1.0, "met": False} in summary["verdict"]["slo"]


def test_the_error_rate_is_over_attempted_turns_and_failed_runs_feed_no_figure(tmp_path):
    with running("every_other_run_fails") as url:
        # 8 s, not QUICK's 3: each run needs a second turn (the first succeeds); a loaded host's
        # Locust start-up left one turn in 3 s, an error rate of 0 that no --slo can fail
        longer = [*QUICK, "--run-time", "8s"]
        budget, summary = asp_load(url, tmp_path, *longer, "--slo", "error_rate=0.75")
        strict, strict_summary = asp_load(url, tmp_path, *longer, "--slo", "error_rate=0.1")
    turns = summary["turns"]
    assert turns["succeeded"] >= 1 and turns["failed"] >= 1
    assert summary["error_rate"] == round(turns["failed"] / turns["attempted"], 6)
    assert 0.25 <= summary["error_rate"] <= 0.75  # every other run, give or take the first and last
    assert summary["samples"]["e2e_ms"] == summary["samples"]["ttft_ms"] == turns["succeeded"]
    assert_errors_add_up(summary)
    assert budget.returncode == 0, budget.stdout[-2000:]
    assert strict.returncode == 3 and "SLO error_rate" in strict.stdout
    assert strict_summary["verdict"]["exit_code"] == 3


@pytest.mark.parametrize(
    ("server", "kind"), [("refuse_handshake", "refused:http_403"), (None, "connect_failed")]
)
def test_connections_that_fail_are_errors_and_a_run_that_measured_nothing_fails(server, kind, tmp_path):
    users = ["--users", "2", "--spawn-rate", "10", "--run-time", "2s", "--slo", "error_rate=0.01"]
    with running(server) if server else no_server() as url:
        result, summary = asp_load(url, tmp_path, *users, "--jwt-secret", "x")
    assert result.returncode == 1, result.stderr[-2000:]
    assert summary["connections"] == {
        "attempted": 2,
        "accepted": 0,
        "failed": 2,
        "rejected_by_code": {"http_403": 2} if server else {},
        "dropped_by_code": {},
    }
    assert summary["errors"] == 2 and summary["errors_by_kind"] == {kind: 2}
    assert summary["turns"]["attempted"] == 0
    assert_nothing_fabricated(summary)
    assert "nothing measured" in " ".join(summary["verdict"]["reasons"])
    hinted = "the upgrade was refused with HTTP 403: is the path right? (/ws/chat)" in result.stderr
    assert hinted == bool(server)
