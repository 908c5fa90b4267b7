"""The test harness's own promises: its waits are upper bounds that never hide a failure, and the
longest test files are scheduled first."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from loadtests.bench.processes import START_TIMEOUT_S
from tests.conftest import LONGEST_FILES, pytest_collection_modifyitems
from tests.support.server import ServerProcess

ROOT = Path(__file__).resolve().parents[1]


def test_a_server_that_exits_before_it_is_ready_fails_its_start_at_once(tmp_path: Path) -> None:
    """It printed its URL, then its start failed: the start raises when the process exits, with
    everything it said, not when the (long) start timeout runs out."""
    server = ServerProcess(database=tmp_path / "asp.db", module="tests.support.failing_start", args=("1",))
    began = time.monotonic()
    with pytest.raises(RuntimeError, match="exited with code 2 before it was ready") as failed:
        server.start()
    assert time.monotonic() - began < START_TIMEOUT_S / 4
    assert "listening on ws://" in str(failed.value)
    assert "the storage went away" in str(failed.value)  # its last words, after the exit


def test_every_file_in_longest_files_exists_once() -> None:
    """A renamed or deleted file left in LONGEST_FILES fails here, not silently in the schedule."""
    assert len(set(LONGEST_FILES)) == len(LONGEST_FILES), "a file is named twice"
    stale = [name for name in LONGEST_FILES if not (ROOT / name).is_file() or "/test_" not in name]
    assert stale == [], f"LONGEST_FILES in tests/conftest.py names test files that do not exist: {stale}"


def test_the_longest_files_go_first_in_their_order_and_each_file_keeps_its_own() -> None:
    first, second = LONGEST_FILES[:2]
    nodeids = ["tests/a/test_x.py::one", f"{second}::b1", "tests/a/test_x.py::two", f"{first}::a1"]
    nodeids += [f"{second}::b2", "tests/b/test_y.py::one", f"{first}::a2"]
    items = [cast(pytest.Item, SimpleNamespace(nodeid=nodeid)) for nodeid in nodeids]
    pytest_collection_modifyitems(items)
    assert [item.nodeid for item in items] == [
        f"{first}::a1",
        f"{first}::a2",
        f"{second}::b1",
        f"{second}::b2",
        "tests/a/test_x.py::one",
        "tests/a/test_x.py::two",
        "tests/b/test_y.py::one",
    ]
