"""State shared by every server process through Redis (`ASP_REDIS_URL`): the connection registry
and the per-user rate limit. Any number of processes on any number of machines then enforce one
connection limit, one connection per user and one rate limit, exactly as one process does.

Every decision is one Lua script, run atomically by Redis: there is no check-then-act between
processes. Time is Redis's own clock (`TIME`), so the processes' clocks never have to agree.

Keys (all under `ASP_REDIS_PREFIX`, so deployments and test runs sharing one Redis never meet):

- `{prefix}:conn:users`, a hash user -> owner (`{instance}/{connection}`): the live connections,
  one per user; its length is the number of slots in use.
- `{prefix}:conn:leases`, a sorted set instance -> lease expiry (ms): each process refreshes its
  lease every third of `lease_ttl_ms`. A process that dies (SIGKILL) stops refreshing; the next
  script run by any process after the lease expired frees its slots. No ghosts survive the TTL.
- `{prefix}:conn:supersede:{instance}`, a pub/sub channel: the owner of a connection superseded by
  a newer one on another process is told to close it with 4002 (ASP-DUP-001).
- `{prefix}:rate:{user}`, a sorted set of the user's run starts (µs), trimmed to the window.
- `{prefix}:hist:{conversation}`, a hash: `v` the token of the conversation's stored history,
  replaced after each append (`RedisHistoryVersions`, see reference_server.storage.HistoryVersions);
  it expires HISTORY_TTL_MS after its last use.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis

from reference_server.connections import AT_CAPACITY, Admitted, ConnectionRegistry
from reference_server.logs import get_logger
from reference_server.protocol.ratelimit import ALLOWED, RateDecision, decide
from reference_server.ratelimit import RunRateLimiter

log = get_logger("redis")
EARLY_TTL_S = 30.0
C = TypeVar("C")

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Frees the slots of every instance whose lease expired. KEYS[1] users, KEYS[2] leases.
_PURGE = """
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #dead > 0 then
  local gone = {}
  for _, instance in ipairs(dead) do gone[instance] = true end
  local all = redis.call('HGETALL', KEYS[1])
  for k = 1, #all, 2 do
    if gone[string.match(all[k + 1], '^(.*)/[^/]*$')] then redis.call('HDEL', KEYS[1], all[k]) end
  end
  redis.call('ZREM', KEYS[2], unpack(dead))
end
"""

# ARGV: user, owner, max_connections, instance, lease_ttl_ms -> {admitted 0/1, previous owner, slots in use}
ADMIT = (
    _NOW_MS
    + _PURGE
    + """
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[4])
local previous = redis.call('HGET', KEYS[1], ARGV[1])
if not previous and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return {0, '', redis.call('HLEN', KEYS[1])}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {1, previous or '', redis.call('HLEN', KEYS[1])}
"""
)

# ARGV: user, owner -> slots in use. Frees the slot only if this connection still holds it.
RELEASE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return redis.call('HLEN', KEYS[1])
"""

# ARGV: instance, lease_ttl_ms -> slots in use. Refreshes this instance's lease, frees dead ones'.
HEARTBEAT = (
    _NOW_MS
    + _PURGE
    + """
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('HLEN', KEYS[1])
"""
)

# ARGV: instance. A clean shutdown: this instance's slots and lease go at once.
RETIRE = """
local all = redis.call('HGETALL', KEYS[1])
for k = 1, #all, 2 do
  if string.match(all[k + 1], '^(.*)/[^/]*$') == ARGV[1] then redis.call('HDEL', KEYS[1], all[k]) end
end
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HLEN', KEYS[1])
"""

# The sliding log of ASP-LIM-009. KEYS[1] the user's run starts; ARGV: messages, window_us, member.
# A start exactly `window` old has left the window (removed with an inclusive bound). Returns
# {1, seconds, µs} (Redis's TIME) when the run may start (and records it), else
# {0, seconds, µs, counted starts...} (µs since the epoch).
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.floor(window / 1000) + 1000)
  return {1, t[1], t[2]}
end
local reply = {0, t[1], t[2]}
for i, item in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')) do
  if i % 2 == 0 then table.insert(reply, item) end
end
return reply
"""


HISTORY_TTL_MS = 3_600_000

# KEYS[1] the conversation's hash; ARGV: a token to set if it has none, the TTL (ms) -> its token.
HISTORY_CURRENT = """
redis.call('HSETNX', KEYS[1], 'v', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('HGET', KEYS[1], 'v')
"""

# ARGV: the TTL (ms), then a token per key. Conversations just created: no append yet.
HISTORY_FRESH = """
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 'v', ARGV[i + 1])
  redis.call('PEXPIRE', key, ARGV[1])
end
return 0
"""

# After an append's commit. ARGV: the new token, the TTL (ms) -> the token replaced ('' if none).
HISTORY_REPLACE = """
local replaced = redis.call('HGET', KEYS[1], 'v') or ''
redis.call('HSET', KEYS[1], 'v', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return replaced
"""


class RedisHistoryVersions:
    """Which cached copies of conversations are still the stored ones, for every process sharing
    one database (reference_server.storage.HistoryVersions): an append through any process is seen
    by the next load on every other, at the cost of one round trip per load."""

    def __init__(self, client: aioredis.Redis, prefix: str, ttl_ms: int = HISTORY_TTL_MS) -> None:
        self.client: Any = client
        self._prefix = f"{prefix}:hist:"
        self.ttl_ms = ttl_ms
        self._current = client.register_script(HISTORY_CURRENT)
        self._fresh = client.register_script(HISTORY_FRESH)
        self._replace = client.register_script(HISTORY_REPLACE)

    async def current(self, conversation_id: str) -> str:
        found = await self._current(keys=[self._prefix + conversation_id], args=[_token(), self.ttl_ms])
        return str(found)

    async def fresh(self, conversation_ids: list[str]) -> list[str]:
        tokens = [_token() for _ in conversation_ids]
        await self._fresh(keys=[self._prefix + c for c in conversation_ids], args=[self.ttl_ms, *tokens])
        return tokens

    async def replace(self, conversation_id: str) -> tuple[str, str]:
        token = _token()
        replaced = await self._replace(keys=[self._prefix + conversation_id], args=[token, self.ttl_ms])
        return str(replaced), token


def _token() -> str:
    return secrets.token_hex(8)


def connect(url: str, max_connections: int = 24) -> aioredis.Redis:
    """A pooled client for `url` (redis:// or rediss://); connects lazily. The pool is bounded (a
    burst of connects waits for a Redis connection rather than opening one each: memory per client
    connection stays flat); the two pub/sub listeners and each resume being followed hold one.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=10, decode_responses=True, health_check_interval=30
    )
    return aioredis.Redis(connection_pool=pool)


def new_instance_id() -> str:
    """Unique per process start; never contains '/' (the owner separator)."""
    host = socket.gethostname().replace("/", "-")
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


class RedisRegistry(ConnectionRegistry[C], Generic[C]):
    """The connection limit and one connection per user, shared by every process on one Redis.

    `on_superseded` is called with a local connection that a newer connection of its user, on
    another process, superseded: it must close it with 4002. A superseded connection on this
    process is returned by `admit`, as the in-memory registry does.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        max_connections: int,
        lease_ttl_ms: int,
        on_superseded: Callable[[C], None],
    ) -> None:
        self.client = client
        self.instance = new_instance_id()
        self.max_connections = max_connections
        self.lease_ttl_ms = lease_ttl_ms
        self._keys = [f"{prefix}:conn:users", f"{prefix}:conn:leases"]
        self._channel_prefix = f"{prefix}:conn:supersede:"
        self._on_superseded = on_superseded
        self._admit = client.register_script(ADMIT)
        self._release = client.register_script(RELEASE)
        self._heartbeat = client.register_script(HEARTBEAT)
        self._retire = client.register_script(RETIRE)
        self._owners: dict[int, str] = {}  # id(connection) -> owner
        self._by_owner: dict[str, C] = {}
        # owners superseded before this process finished admitting them (or after it released
        # them: those are forgotten after EARLY_TTL_S)
        self._early: dict[str, float] = {}
        self._active = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._pubsub: Any = None

    async def start(self) -> None:
        """Take the lease, listen for supersessions, refresh the lease every third of its TTL."""
        await self._heartbeat(keys=self._keys, args=[self.instance, self.lease_ttl_ms])
        self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self._channel_prefix + self.instance)
        self._tasks = [
            asyncio.create_task(self._listen(), name="registry-listen"),
            asyncio.create_task(self._refresh(), name="registry-lease"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self._retire(keys=self._keys, args=[self.instance])
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl_ms / 3000)
            try:
                reply = await self._heartbeat(keys=self._keys, args=[self.instance, self.lease_ttl_ms])
                self._active = int(reply)
            except Exception:
                log.exception("could not refresh this process's connection lease")

    async def _listen(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=5.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("supersede channel failed; resubscribing")
                await asyncio.sleep(0.5)
                continue
            if message is None or message.get("type") != "message":
                continue
            owner = str(message["data"])
            connection = self._by_owner.get(owner)
            if connection is None:
                now = time.monotonic()
                self._early[owner] = now
                for stale in [o for o, at in self._early.items() if now - at > EARLY_TTL_S]:
                    del self._early[stale]
            else:
                self._on_superseded(connection)

    async def admit(self, user_id: str, connection: C) -> Admitted[C] | None:
        owner = f"{self.instance}/{secrets.token_hex(8)}"
        admitted, previous, active = await self._admit(
            keys=self._keys,
            args=[user_id, owner, self.max_connections, self.instance, self.lease_ttl_ms],
        )
        self._active = int(active)
        if not int(admitted):
            return AT_CAPACITY
        self._owners[id(connection)] = owner
        self._by_owner[owner] = connection
        if self._early.pop(owner, None) is not None:  # a newer connection elsewhere took the slot
            self._on_superseded(connection)
        local = None
        if previous:
            instance = str(previous).rsplit("/", 1)[0]
            if instance == self.instance:
                local = self._by_owner.get(str(previous))
            else:
                await self.client.publish(self._channel_prefix + instance, str(previous))
        return Admitted(local if local is not connection else None)

    async def release(self, user_id: str, connection: C) -> None:
        owner = self._owners.pop(id(connection), None)
        if owner is None:
            return
        self._by_owner.pop(owner, None)
        self._active = int(await self._release(keys=self._keys, args=[user_id, owner]))

    async def alive(self, instance: str) -> bool:
        """Whether `instance` still holds its lease (a process that died loses it within the TTL)."""
        expiry = await self.client.zscore(self._keys[1], instance)
        if expiry is None:
            return False
        seconds, micros = await self.client.time()
        return float(expiry) > seconds * 1000 + micros // 1000

    @property
    def active(self) -> int:
        """Slots in use across every process, as of this process's last script."""
        return self._active


class RedisRunRateLimiter(RunRateLimiter):
    """ASP-LIM-009's sliding log, per user, shared by every process: one script trims the user's
    log, decides and records atomically. The arithmetic of a refusal (retry_after_ms) is the decision
    core's `decide`, applied to the starts the script counted, so both limiters answer alike.

    Why not the `limits` library's Redis storage: its moving window counts whole seconds (a 400 ms
    window becomes 1 s) and still counts a start exactly one window old, both against ASP-LIM-009;
    and its `redis` extra pins redis<8 (see reference_server/ratelimit.py).
    """

    def __init__(self, client: aioredis.Redis, prefix: str, messages: int, window_ms: int) -> None:
        self.messages = messages
        self.window_s = window_ms / 1000
        self._window_us = window_ms * 1000
        self._prefix = f"{prefix}:rate:"
        self._acquire = client.register_script(ACQUIRE)

    async def acquire(self, user_id: str, now: float) -> RateDecision:
        """`now` is ignored: every process reads Redis's clock, so their clocks need not agree."""
        reply = await self._acquire(
            keys=[self._prefix + user_id], args=[self.messages, self._window_us, secrets.token_hex(8)]
        )
        if int(reply[0]):
            return ALLOWED
        now_s = int(reply[1]) + int(reply[2]) / 1e6
        starts = sorted(float(score) / 1e6 for score in reply[3:])
        return decide(starts, now_s, self.messages, self.window_s)

    def sweep(self, now: float) -> None:
        """Nothing to do: each user's log expires in Redis one window after its last start."""
