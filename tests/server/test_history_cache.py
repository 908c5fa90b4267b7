"""The history cache is bounded in bytes, not only in conversations: a few huge answers cannot pin
memory (the kind of the replay defect; attack 14 grew 64 MB per conversation of one bulk run)."""

from __future__ import annotations

from pathlib import Path

from pydantic_ai.messages import ModelRequest, ModelResponse, TextPart, UserPromptPart

from reference_server.storage import Exchange, SqlConversationStore


def exchange(run_id: str, text: str) -> Exchange:
    messages = (ModelRequest(parts=[UserPromptPart("q")]), ModelResponse(parts=[TextPart(text)]))
    return Exchange(run_id, f"m_{run_id}", "stop", messages)


async def test_the_cache_keeps_at_most_its_bytes_and_loads_stay_exact(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"
    store = SqlConversationStore(url, cache_size=100, cache_bytes=50_000)
    await store.start()
    try:
        small = await store.create("u")
        await store.append(small, "u", exchange("run_a", "x" * 1000))
        big = await store.create("u")
        await store.append(big, "u", exchange("run_b", "y" * 60_000))  # larger than the bound alone
        assert big not in store._cache and small in store._cache
        assert store._cached_bytes <= 50_000
        others = [await store.create("u") for _ in range(3)]
        for index, conversation in enumerate(others):
            await store.append(conversation, "u", exchange(f"run_{index}", "z" * 20_000))
        assert store._cached_bytes <= 50_000 and small not in store._cache  # the oldest went first
        loaded = await store.load(big, "u")  # from the database, exact
        assert [e.run_id for e in loaded] == ["run_b"]
        assert big not in store._cache
        assert [e.run_id for e in await store.load(small, "u")] == ["run_a"]
    finally:
        await store.close()
