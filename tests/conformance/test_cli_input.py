"""Bad input to `asp check` / `asp check-client`: one line on stderr, exit 2, before any connection
(and no traceback), in process."""

from __future__ import annotations

from pathlib import Path

import pytest

from asp_cli.main import main

URL = "ws://127.0.0.1:9/ws/chat"  # never reached: every input below is refused first
SECRET = ["--jwt-secret", "x" * 40]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["check", "ws://[::1", *SECRET], "not a URL"),
        (["check", URL, "--token-file", "/bin/true"], "--token-file /bin/true is not UTF-8"),
        (["check", URL, "--token-file", "/nonexistent/tokens"], "cannot read --token-file"),
        (["check", URL, *SECRET, "--expected-failures", "/nonexistent.yaml"], "--expected-failures"),
        (["check", URL, *SECRET, "--expected-failures", "/bin/true"], "--expected-failures /bin/true"),
        (["check", URL, *SECRET, "--timeout-multiplier", "nan"], "--timeout-multiplier"),
        (["check", URL, *SECRET, "--max-wait", "nan"], "--max-wait"),
        (["check", URL, *SECRET, "--max-wait", "inf"], "--max-wait"),
        (["check", URL, *SECRET, "--fuzz-examples", "-5"], "--fuzz-examples"),
        (["check", URL, *SECRET, "--max-connections", "-1"], "--max-connections"),
        (["check", URL, *SECRET, "--max-connections", "0"], "--max-connections"),
        (["check-client", "--command", "true", "--protocol-version", "9.0"], "--protocol-version 9.0"),
        (["check-client", "--command", "true", "--timeout-multiplier", "inf"], "--timeout-multiplier"),
        (["check-client", "--command", "true", "--expected-failures", "/bin/true"], "--expected-failures"),
    ],
)
def test_bad_input_is_a_usage_error_of_one_line(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_baseline_of_json_that_is_no_list_or_object_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    baseline = tmp_path / "expected.json"
    baseline.write_text("42")
    assert main(["check", URL, *SECRET, "--expected-failures", str(baseline)]) == 2
    assert "neither a list" in capsys.readouterr().err
