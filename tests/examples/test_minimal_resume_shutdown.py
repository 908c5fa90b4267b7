"""The minimal server's resume and graceful shutdown, over real sockets.

Resume replays from `last_seq` then tails the live run (ASP-RES-001, ASP-RES-004) and is refused
exactly as ASP-RES-002 and ASP-RES-006 say; shutdown lets runs finish within the grace, cuts the
rest with `shutting_down` after storing them, refuses new messages, then closes 1001 (ASP-CLS-005).
"""

from __future__ import annotations

import asyncio
import signal

from conformance.wire import AspClient
from tests.examples.conftest import Event, MinimalServer, Opener, Starter, opened


async def resume(client: AspClient, session_id: str, last_seq: int, message_id: str = "r") -> Event:
    await client.send({"type": "resume", "id": message_id, "session_id": session_id, "last_seq": last_seq})
    return await client.expect(lambda e: e["type"] == "resumed" or e.get("code") == "resume_failed", 5)


async def test_resume_replays_from_last_seq_then_tails_the_run_and_cancel_reaches_it(
    minimal: MinimalServer, connect: Opener
):
    first, session = await opened(connect, minimal, "resumer", conversation_id="new")
    await first.send({"type": "message", "content": "asp-fixture:slow 40 50"})
    started = await first.expect("run_started", 5)
    for _ in range(3):
        await first.expect("text_delta", 5)
    last_seq = first.events[-1]["seq"]
    first.abort()
    second, _ = await opened(connect, minimal, "resumer", conversation_id=session["conversation_id"])
    await second.send({"type": "ping", "id": "before"})  # pings before the resume do not prevent it
    await second.send("not json")
    answer = await resume(second, session["session_id"], last_seq)
    assert answer["type"] == "resumed" and answer["replay_from"] == last_seq + 1
    replayed = await second.expect(lambda e: e.get("seq") == last_seq + 1, 5)
    assert replayed["type"] == "text_delta" and replayed["run_id"] == started["run_id"]
    await second.send({"type": "cancel", "run_id": started["run_id"]})
    complete = await second.expect("complete", 5)
    assert complete["finish_reason"] == "cancelled"
    again = await resume(second, session["session_id"], last_seq)  # a second resume
    assert again["code"] == "resume_failed" and again["message_id"] == "r" and "run_id" not in again


async def test_resume_refusals(make_minimal: Starter, connect: Opener):
    server = make_minimal(replay_window=4, session_ttl_ms=800)
    old, old_session = await opened(connect, server, "refused", conversation_id="new")
    await old.send({"type": "message", "content": "asp-fixture:text 10"})
    await old.expect("complete", 5)
    last = old.events[-1]["seq"]
    await old.close()
    client, own = await opened(connect, server, "refused", conversation_id=old_session["conversation_id"])
    assert (await resume(client, own["session_id"], 1))["code"] == "resume_failed"  # its own session
    assert (await resume(client, old_session["session_id"], last + 1))["code"] == "resume_failed"  # beyond
    assert (await resume(client, old_session["session_id"], 1))["code"] == "resume_failed"  # no longer kept
    intruder, _ = await opened(connect, server, "intruder")
    assert (await resume(intruder, old_session["session_id"], last))["code"] == "resume_failed"  # not theirs
    await client.send({"type": "message", "id": "x", "content": "y", "conversation_id": "conv_other"})
    assert (await client.expect("error", 5))["code"] == "conversation_not_found"  # refused: no run started
    assert (await resume(client, old_session["session_id"], last - 3))["type"] == "resumed"
    late, _ = await opened(connect, server, "late", conversation_id="new")
    await late.send({"type": "message", "content": "asp-fixture:text 1"})
    await late.expect("complete", 5)
    late_last = late.events[-1]["seq"]
    await late.close()
    await asyncio.sleep(1.0)  # past session_ttl_ms
    fresh, _ = await opened(connect, server, "late")
    assert (await resume(fresh, late.events[0]["session_id"], late_last))["code"] == "resume_failed"
    started, _ = await opened(connect, server, "started", conversation_id="new")
    await started.send({"type": "message", "content": "asp-fixture:text 1"})
    await started.expect("complete", 5)
    assert (await resume(started, old_session["session_id"], last))["code"] == "resume_failed"  # after a run


async def test_shutdown_finishes_or_cuts_runs_refuses_messages_and_closes_1001(
    make_minimal: Starter, connect: Opener
):
    server = make_minimal(shutdown_grace_ms=1500)
    quick, _ = await opened(connect, server, "quick", conversation_id="new")
    slow, slow_session = await opened(connect, server, "slow", conversation_id="new")
    await quick.send({"type": "message", "content": "asp-fixture:slow 5 100"})
    await slow.send({"type": "message", "id": "m-slow", "content": "asp-fixture:slow 200 50"})
    started = await slow.expect("run_started", 5)
    await quick.expect("run_started", 5)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    await slow.send({"type": "message", "id": "during", "content": "too late"})
    refused = await slow.expect("error", 5)
    assert (refused["code"], refused["message_id"], "run_id" in refused) == ("shutting_down", "during", False)
    assert (await quick.expect("complete", 5))["finish_reason"] == "stop"  # finished within the grace
    cut = await slow.expect(lambda e: e["type"] == "error" and e.get("run_id") == started["run_id"], 5)
    assert (cut["code"], cut["message_id"]) == ("shutting_down", "m-slow")
    assert (await slow.expect("complete", 5))["finish_reason"] == "error"
    assert await slow.wait_closed(5) == 1001 and await quick.wait_closed(5) == 1001
    assert server.process.wait(10) == 0
    server.start()
    again, _ = await opened(connect, server, "slow", conversation_id=slow_session["conversation_id"])
    history = await again.expect("history", 5)
    assert [m["role"] for m in history["messages"]] == ["user", "assistant"]  # stored as far as it went
    assert "too late" not in str(history)
