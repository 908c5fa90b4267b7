"""`asp check` against two worker processes on one Redis and one PostgreSQL: every case passes
(issue 13). Each connection goes to whichever worker accepts it first, so the duplicate, resume,
limit and history cases cross processes as it happens."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conformance.conftest import CHECK_SETTINGS
from tests.support.server import SECRET, ServerProcess
from tests.support.services import fresh_database, fresh_prefix, redis_url


def test_asp_check_passes_in_full_against_two_workers(tmp_path: Path) -> None:
    with fresh_database() as database_url:
        settings = {**CHECK_SETTINGS, "ASP_REDIS_URL": redis_url(), "ASP_REDIS_PREFIX": fresh_prefix()}
        settings["ASP_DATABASE_URL"] = database_url
        server = ServerProcess(
            database=tmp_path / "unused.db",
            settings=settings,
            module="asp_cli.main",
            args=("serve", "--workers", "2"),
        ).start()
        try:
            report_file = tmp_path / "report.json"
            command = [sys.executable, "-m", "asp_cli.main", "check", server.url, "--jwt-secret", SECRET]
            result = subprocess.run(
                [*command, "--quiet", "--json-file", str(report_file)],
                capture_output=True,
                text=True,
                timeout=180,
            )
            report = json.loads(report_file.read_text())
            not_passing = {
                c["id"]: (c["outcome"], c["reason"]) for c in report["cases"] if c["outcome"] != "pass"
            }
            assert result.returncode == 0 and not_passing == {}, (not_passing, result.stdout[-2000:])
        finally:
            server.stop()
