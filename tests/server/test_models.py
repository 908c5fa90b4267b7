"""ASP_MODEL takes any pydantic-ai model string; `test` (pydantic-ai's TestModel) needs no network."""

from __future__ import annotations


async def test_a_pydantic_ai_model_string_runs_through_the_same_path(make_server, connect):
    server = make_server(model="test")
    client = await connect(server, user="model-test", conversation_id="new")
    session = await client.expect("session")
    assert "fixtures" not in session["capabilities"]  # fixtures belong to the offline model only
    await client.send({"type": "message", "content": "What time is it?"})
    run = await client.collect_run(timeout=30)
    assert run[0]["type"] == "run_started" and run[-1]["type"] == "complete"
    calls = [e for e in run if e["type"] == "tool_call"]
    results = {e["tool_call_id"] for e in run if e["type"] == "tool_result"}
    assert calls and {c["tool_call_id"] for c in calls} == results  # TestModel calls the tools
