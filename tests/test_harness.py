"""The test harness's own promises: its waits are upper bounds that never hide a failure."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.server import START_TIMEOUT_S, ServerProcess


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
