"""The Redis scripts on their own, on a real Redis: the sliding log of ASP-LIM-009 answers as the
in-memory limiter does, and the registry stays exact under concurrent admits from two processes'
registries (here two registry objects with their own instance ids)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from reference_server.redis_state import RedisRegistry, RedisRunRateLimiter, connect
from tests.support.services import fresh_prefix, redis_url


@pytest.fixture
async def client() -> AsyncIterator[object]:
    redis = connect(redis_url())
    prefix = fresh_prefix()
    yield redis, prefix
    keys = [key async for key in redis.scan_iter(prefix + ":*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def test_the_sliding_log_refuses_then_admits_after_retry_after(client: object) -> None:
    redis, prefix = client  # type: ignore[misc]
    limiter = RedisRunRateLimiter(redis, prefix, messages=2, window_ms=300)
    assert (await limiter.acquire("u", 0)).allowed
    assert (await limiter.acquire("u", 0)).allowed
    refused = await limiter.acquire("u", 0)
    assert not refused.allowed and 1 <= refused.retry_after_ms <= 300
    assert (await limiter.acquire("other", 0)).allowed  # per user
    await asyncio.sleep(refused.retry_after_ms / 1000)
    assert (await limiter.acquire("u", 0)).allowed  # a message sent after retry_after_ms is not refused


async def test_admits_are_exact_across_registries_and_a_silent_one_loses_its_slots(client: object) -> None:
    redis, prefix = client  # type: ignore[misc]
    registries = [RedisRegistry(redis, prefix, 5, 1000, on_superseded=lambda c: None) for _ in range(2)]
    for registry in registries:
        await registry.start()
    try:
        outcomes = await asyncio.gather(*[registries[i % 2].admit(f"user-{i}", object()) for i in range(12)])
        assert sum(outcome is not None for outcome in outcomes) == 5
        held_by_first = sum(o is not None for i, o in enumerate(outcomes) if i % 2 == 0)
        # the first registry's process "dies": its lease stops being refreshed
        for task in registries[0]._tasks:
            task.cancel()
        deadline = asyncio.get_running_loop().time() + 10
        admitted = 0
        while admitted < held_by_first:
            assert asyncio.get_running_loop().time() < deadline, (
                "the silent registry's slots were never freed"
            )
            if await registries[1].admit(f"late-{admitted}", object()) is not None:
                admitted += 1
            else:
                await asyncio.sleep(0.1)
        assert await registries[1].admit("one-too-many", object()) is None
    finally:
        for registry in registries:
            await registry.close()
