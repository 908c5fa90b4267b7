"""A client that floods its standard output breaks the driver contract (spec/CLIENT-DRIVER.md): the
kit reads a bounded amount of it, ends the client and fails it, without waiting out its budgets."""

from __future__ import annotations

import asyncio
import gc

import pytest

from conformance.client.options import ClientCheckOptions
from conformance.client.runner import run_client_check
from conformance.outcomes import Outcome


@pytest.mark.parametrize("command", [["yes"], ["cat", "/dev/urandom"]])
async def test_a_client_flooding_its_standard_output_fails_on_the_driver_contract(command: list[str]):
    options = ClientCheckOptions(
        command=command, include=["extensions.x_members_and_events"], timeout_multiplier=0.1
    )
    report = await asyncio.wait_for(run_client_check(options), 60)
    failed = [r for r in report.everything if r.outcome == Outcome.FAIL]
    assert failed and all("driver contract" in r.reason for r in failed), [r.reason for r in failed]
    assert not [r for r in report.everything if r.outcome == Outcome.HARNESS_ERROR]
    assert report.exit_code() == 1


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_flooding_client_leaves_no_pipe_open_after_its_loop_closed() -> None:
    """The kit stopped reading a flooding client's output, so the paused pipe never saw its end and
    its transport was collected after the loop closed ("Event loop is closed", unraisable)."""
    options = ClientCheckOptions(
        command=["cat", "/dev/urandom"], include=["extensions.x_members_and_events"], timeout_multiplier=0.1
    )
    report = asyncio.run(asyncio.wait_for(run_client_check(options), 60))
    assert report.exit_code() == 1
    gc.collect()  # the transport, were it still open, is collected here, its loop closed
