"""A user who ran `pip install` can validate without a checkout: the spec files ship in the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from spec import SPEC_DIR

REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_carries_every_canonical_spec_file_and_the_site_templates(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    canonical = [
        path.relative_to(SPEC_DIR.parent).as_posix()
        for path in SPEC_DIR.rglob("*")
        if path.is_file() and path.suffix in {".json", ".yaml", ".md", ".jsonl", ".j2", ".css", ".js"}
    ]
    assert canonical, "no spec files found"
    missing = sorted(set(canonical) - names)
    assert missing == [], f"not in the wheel: {missing}"
