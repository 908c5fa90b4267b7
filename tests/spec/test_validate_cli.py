"""`asp spec validate`, run as a user runs it: exit codes and requirement IDs on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spec import EXAMPLES_DIR

TRANSCRIPTS = EXAMPLES_DIR / "transcripts"
EXPECTED: dict[str, list[str]] = yaml.safe_load((TRANSCRIPTS / "expected.yaml").read_text())


def asp(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asp_cli.main", *args], input=stdin, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "name,requirement",
    [
        ("bad-seq-gap.jsonl", "ASP-ENV-002"),
        ("bad-delta-before-run-started.jsonl", "ASP-RUN-001"),
        ("bad-tool-call-unanswered.jsonl", "ASP-TOOL-002"),
        ("bad-event-after-complete.jsonl", "ASP-RUN-005"),
        ("bad-unknown-type.jsonl", "ASP-ENV-001"),
        ("bad-schema-violation.jsonl", "ASP-ENV-001"),
    ],
)
def test_validate_names_the_violated_requirement_and_exits_1(name: str, requirement: str) -> None:
    result = asp("spec", "validate", str(TRANSCRIPTS / name))
    assert result.returncode == 1, result.stdout + result.stderr
    assert requirement in result.stdout
    assert EXPECTED[name] == [requirement]


def test_validate_passes_a_clean_transcript_with_exit_0() -> None:
    result = asp("spec", "validate", str(TRANSCRIPTS / "clean-tool-run.jsonl"))
    assert result.returncode == 0, result.stdout
    assert "no violations" in result.stdout


def test_validate_reads_standard_input() -> None:
    text = (TRANSCRIPTS / "bad-seq-gap.jsonl").read_text()
    result = asp("spec", "validate", "-", stdin=text)
    assert result.returncode == 1 and "ASP-ENV-002" in result.stdout


@pytest.mark.parametrize("path", sorted((EXAMPLES_DIR / "valid").glob("*.json")), ids=lambda p: p.name)
def test_validate_accepts_each_valid_single_message(path: Path) -> None:
    assert asp("spec", "validate", str(path)).returncode == 0


def test_validate_rejects_an_invalid_client_message() -> None:
    result = asp("spec", "validate", "-", stdin=json.dumps({"type": "message", "content": ""}))
    # the schema's requirement (ASP-ENV-004), not the framing one (ASP-TRN-003): it is one JSON object
    assert result.returncode == 1 and "ASP-ENV-004" in result.stdout and "ASP-TRN-003" not in result.stdout


@pytest.mark.parametrize("text", ["", "   \n", "[1, 2]", "not json at all"])
def test_validate_exits_2_on_unusable_input(text: str) -> None:
    assert asp("spec", "validate", "-", stdin=text).returncode == 2


def test_validate_exits_2_on_a_missing_file(tmp_path: Path) -> None:
    assert asp("spec", "validate", str(tmp_path / "absent.jsonl")).returncode == 2
