"""Sessions shared by every process through Redis: a resume works on any of them (ASP-RES-007).

Each session has one *home*, the process that sequences its events (where its connection opened,
or the last one that took it over). The home writes every sequenced event to the session's Redis
Stream, in batches (one script call per writer turn, never a round trip per token), entry id
`{seq}-0`, trimmed to `replay_window` (more while followed, below) and expiring `session_ttl_ms`
after the session was last carried or ran:

- `{prefix}:ses:{id}`: the stream; field `e` is the event's JSON text exactly as it was sent.
- `{prefix}:ses:{id}:follow`: a follower's position (below), `{entry id} {token}`: the entry id it
  has read up to and the token of the resume that holds it, expiring FOLLOW_TTL_MS after its last
  read.
- `{prefix}:ses:{id}:meta`: a hash: user_id, conversation_id, home (instance id), and while a run
  is active its run_id, message_id and prompt.
- `{prefix}:inst:{instance}`: each process's pub/sub channel, messages as JSON: `cancel` (a run it
  runs), `emit` (an event for a session it holds, from the process that carries its connection),
  `handover` (give the session to another process).

A resume of a session held by another process (ASP-RES-007): the process the client reached
mirrors the session as soon as it accepts the resume (pinned: what it reads waits until its
connection attaches, as the stream is trimmed meanwhile): it replays the stream after `last_seq`,
then tails it while the home's run goes on. Events its own connection causes meanwhile (a pong,
an error) are sent to the home to be sequenced there, so seq stays one sequence; a `cancel` goes
to the home, which stops the run. It asks the home to hand the session over; the home does so
once no run is active: it sequences and writes everything pending, then a marker entry `{seq}-1`
naming the new home, and forgets the session. The mirror, reading the marker, becomes the home
and sequences from there.

A follower's position holds the home's trim: keeping more than the last replay_window events is
legal (ASP-RES-003 says "at least"), so while the follow key is set the home trims only entries
at or before it, beyond the window, and never keeps more than replay_window + FOLLOW_SLACK entries
(a stuck follower cannot grow Redis without bound: past that it falls out as before, 4004). A home
that writes more than a window between two of the follower's reads (a fast run, a loaded host)
no longer trims away the entry after the follower's cursor, closing a client that kept up. The key
is set atomically with `find`'s read (MULTI/EXEC), renewed with each read of the tail, released
when the follower stops or the resume `find` served is refused (`unfollow`). Two followers at once
(resumes on two processes) share the key, last writer wins: the newer resume supersedes the older's
connection anyway, so the older falling out costs nothing, and one plain SET per read stays cheaper
than keeping a minimum. A release deletes the key only while it still holds the releaser's token
(RELEASE_FOLLOW, one script: no check-then-act), so a follower that stops never drops the position
of one that took the key since.

If the home dies (its connection lease expired, see reference_server.redis_state), the mirror
takes the session over at once: a run that was active ends for the client with `error
internal_error` and `complete` (finish_reason `error`), and the exchange as far as it was streamed
is stored in the history first (ASP-HIS-008).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson
import redis.asyncio as aioredis
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ModelResponsePart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from reference_server.logs import get_logger
from reference_server.protocol import connection as core
from reference_server.protocol.effects import Send
from reference_server.protocol.events import Event
from reference_server.sessions import Session
from reference_server.storage import Exchange

if TYPE_CHECKING:
    from reference_server.hub import Hub

log = get_logger("redis-sessions")
TAIL_BLOCK_MS = 1000
CATCH_UP_S = 1.0  # longest wait for a live home's writes to reach a resume's last_seq
FOLLOW_TTL_MS = 5000  # a follower's position holds the trim this long after its last read
FOLLOW_SLACK = 1000  # entries a follower's position may keep beyond replay_window, at most
# Deletes a follow key (KEYS[1]) only while it holds the caller's token (ARGV[1]): its value is
# `{entry id} {token}`. 1 when it deleted the key, else 0 (gone, or another follower's since).
RELEASE_FOLLOW = """
local held = redis.call('GET', KEYS[1])
if held and string.match(held, '^%S+ (%S+)$') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class StreamJournal:
    """A home's record of one session: `append` and `note` queue; the process's one
    `JournalWriter` writes every dirty journal with one script call per turn."""

    def __init__(self, shared: SharedSessions, session: Session) -> None:
        self.shared = shared
        self.session = session
        self.key = shared.stream_key(session.id)
        self.window = max(1, session.limits.replay_window)
        self._pending: list[tuple[int, str]] = []
        self._meta: dict[str, str] = {}
        self._appended = 0  # entries (events and notes) appended, and written or given up on
        self.stored = 0
        self._expired_at: float | None = None  # when a write last set the keys' TTL (monotonic)
        self._renew = False  # set the TTL in the next write, due or not (`renew`)

    def append(self, seq: int, text: str) -> None:
        self._pending.append((seq, text))
        self._appended += 1
        self.shared.writer.dirty(self)

    def note(self, fields: dict[str, str]) -> None:
        """Update the session's meta hash in the next write, after the events appended before."""
        self._meta.update(fields)
        self._appended += 1
        self.shared.writer.dirty(self)

    def renew(self) -> None:
        """Set the keys' TTL in the next write (the session is carried or runs: `refresh`)."""
        self._renew = True
        self.shared.writer.dirty(self)

    def take(self, keys: list[str], journals: list[list[Any]]) -> int:
        """Add what is pending to one call of WRITE_JOURNALS (its KEYS, and its journals before they
        are encoded, see there); the number of entries taken."""
        batch, self._pending = self._pending, []
        meta, self._meta = self._meta, {}
        keys += (self.key, self.shared.meta_key(self.session.id), self.shared.follow_key(self.session.id))
        entries: list[str] = []
        for seq, text in batch:
            entries += (f"{seq}-0", text)
        fields: list[str] = []
        for name, value in meta.items():
            fields += (name, value)
        # The TTL runs from the session's last write with a note (its run started or ended) or its
        # first; in between, at most once per `expire_every_s`: `refresh` renews it as often while the
        # session is carried or runs. Not per write: most writes carry one token of a session.
        now = time.monotonic()
        expire = (
            meta
            or self._renew
            or self._expired_at is None
            or now - self._expired_at >= self.shared.expire_every_s
        )
        if expire:
            self._expired_at = now
            self._renew = False
        journals.append([self.window, entries, fields, 1 if expire else 0])
        return self._appended - self.stored

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything appended so far was written (or failed to be)."""
        target = self._appended
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.stored < target:
                    await self.shared.writer.turn()


# Writes the pending entries of several journals: per journal, its events (XADD with entry id
# `{seq}-0`, exact MAXLEN trimming to the replay window), then its notes (HSET on the meta hash),
# then, when due, the TTL of both keys. While a follower's position is set (the follow key, an
# entry id), XADD trims only to window + ARGV[3] (FOLLOW_SLACK), then XTRIM drops the oldest entries
# beyond the window that are at or before that position (read with XRANGE: about the entries written
# since the last turn, so no cost per event beyond today's); the key's value is `{entry id} {token}`
# (its first word is the position). KEYS: stream, meta, follow, per
# journal. ARGV[1]: the TTL (ms); ARGV[3]: FOLLOW_SLACK;
# ARGV[2]: the journals as one JSON array, in KEYS' order, each [window, [id, text, id, text...],
# [field, value...], expire (1 or 0)]. One call per writer turn with one argument for all the
# entries, instead of a command per event: the client's cost per command and per argument (packing
# in Python, a reply parsed and a timeout armed per command) was most of the journal's CPU (issue
# 13); a JSON string round-trips the texts byte for byte. As with a pipeline, an entry that fails
# does not stop the others: the failures are returned ("key: error") and logged.
WRITE_JOURNALS = """
local ttl = ARGV[1]
local slack = tonumber(ARGV[3])
local failed = {}
local function check(reply, key)
  if type(reply) == 'table' and reply.err then table.insert(failed, key .. ': ' .. reply.err) end
end
for j, journal in ipairs(cjson.decode(ARGV[2])) do
  local stream, meta, follow = KEYS[3 * j - 2], KEYS[3 * j - 1], KEYS[3 * j]
  local window, entries, fields = journal[1], journal[2], journal[3]
  local held = redis.call('GET', follow)
  if held then held = string.match(held, '^%S+') end
  local cap = window
  if held then cap = window + slack end
  for i = 1, #entries, 2 do
    check(redis.pcall('XADD', stream, 'MAXLEN', tostring(cap), entries[i], 'e', entries[i + 1]), stream)
  end
  if held then
    local n = redis.call('XLEN', stream)
    if n > window then
      local read = redis.pcall('XRANGE', stream, '-', held, 'COUNT', n - window)
      if type(read) == 'table' and not read.err and #read > 0 then
        redis.call('XTRIM', stream, 'MAXLEN', n - #read)
      end
    end
  end
  if #fields > 0 then
    check(redis.pcall('HSET', meta, unpack(fields)), meta)
  end
  if journal[4] == 1 then
    redis.pcall('PEXPIRE', stream, ttl)
    redis.pcall('PEXPIRE', meta, ttl)
  end
end
return failed
"""
# At most about this many entries (and journals) per script call: Redis runs a script alone.
CALL_ENTRIES = 2000
# A writer turn begins at most this often, unless a flush waits for it (a run's end, a handover, a
# shutdown): on one long instant stream each coalesced event otherwise had a script call of its
# own (bench: a call per event, the client's cost per call most of what Redis mode added per token).
# A resume elsewhere waits for the home's writes to reach its last_seq (`find`); a home that dies
# leaves at most this much more unwritten (the session goes on after the client's last_seq).
WRITE_INTERVAL_S = 0.02


class JournalWriter:
    """One task per process writes the sessions' events: each turn takes every journal with
    something pending and writes it all with one script call (WRITE_JOURNALS), so the cost per event
    falls as the load rises (never a round trip per token)."""

    def __init__(self, client: Any, ttl_ms: int) -> None:
        self.redis = client
        self.ttl_ms = ttl_ms
        self._script = client.register_script(WRITE_JOURNALS)
        self._dirty: dict[int, StreamJournal] = {}
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()  # a flush waits: the next turn begins at once
        self._turned = asyncio.Event()
        self._began = -WRITE_INTERVAL_S  # loop time the last turn began
        self._task = asyncio.create_task(self._write_forever(), name="journal-writer")

    def dirty(self, journal: StreamJournal) -> None:
        self._dirty[id(journal)] = journal
        self._wake.set()

    async def turn(self) -> None:
        """Wait for the end of the next write, which begins at once (not after WRITE_INTERVAL_S)."""
        self._urgent.set()
        await self._turned.wait()

    async def _write_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            wait = self._began + WRITE_INTERVAL_S - loop.time()
            if wait > 0 and not self._urgent.is_set():  # let the entries of the interval gather
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._urgent.wait()
            self._began = loop.time()
            self._wake.clear()
            self._urgent.clear()
            journals, self._dirty = list(self._dirty.values()), {}
            calls: list[tuple[list[str], list[list[Any]]]] = [([], [])]
            taken, entries = [], 0
            for journal in journals:
                if entries > CALL_ENTRIES or len(calls[-1][1]) >= CALL_ENTRIES:
                    calls.append(([], []))
                    entries = 0
                taken.append(journal.take(*calls[-1]))
                entries += taken[-1]
            try:
                for keys, batch in calls:
                    if keys:
                        failed = await self._script(
                            keys=keys, args=[self.ttl_ms, orjson.dumps(batch), FOLLOW_SLACK]
                        )
                        if failed:
                            log.error(
                                "could not write %d session entries to Redis: %s", len(failed), failed[0]
                            )
            except Exception:
                log.exception("could not write session events to Redis")
            for journal, count in zip(journals, taken, strict=True):
                journal.stored += count
            turned, self._turned = self._turned, asyncio.Event()
            turned.set()

    async def close(self) -> None:
        """After the last flush: stop (a write in flight gets a moment to finish)."""
        if self._dirty:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    while self._dirty:
                        await self.turn()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


@dataclass(frozen=True)
class Remote:
    """A session held by another process, as found in Redis."""

    session_id: str
    user_id: str
    conversation_id: str
    home: str
    home_alive: bool
    run_id: str
    message_id: str
    prompt: str
    last_seq: int
    oldest_seq: int | None
    # The stream's entries (id, fields), read in the one command that found `oldest_seq`: what the
    # resume was decided on is what its mirror replays first, however the home trims meanwhile.
    kept: tuple[tuple[str, dict[str, str]], ...] = ()
    # The token `find` set the follow key with: the mirror's reads keep it, `unfollow` releases it.
    follow_token: str = ""


class SharedSessions:
    """Sessions of this process, written to Redis, and mirrors of other processes' sessions."""

    def __init__(
        self,
        hub: Hub,
        client: aioredis.Redis,
        prefix: str,
        instance: str,
        alive: Callable[[str], Awaitable[bool]],
    ) -> None:
        self.hub = hub
        self.redis: Any = client  # decode_responses=True: str replies (redis-py's types cannot say so)
        self.prefix = prefix
        self.instance = instance
        self.alive = alive
        self.ttl_ms = max(1000, hub.settings.session_ttl_ms)
        self.expire_every_s = min(5.0, self.ttl_ms / 4000)  # a quarter of the TTL, as `refresh` runs
        self.journals: dict[str, StreamJournal] = {}
        self.handovers: dict[str, tuple[str, str]] = {}  # session id -> (asking instance, its token)
        self.homes: dict[str, str] = {}  # mirrored session id -> the process that holds it
        self.moving: dict[str, str] = {}  # session id -> the process it is being handed to
        self._held_back: dict[str, list[Event]] = {}  # events for a session about to be held here
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._release_follow = self.redis.register_script(RELEASE_FOLLOW)
        self.writer: JournalWriter  # from start(): it needs the running loop
        self._pubsub: Any = None
        self._listener: asyncio.Task[None] | None = None

    # --- keys -------------------------------------------------------------------------------------

    def stream_key(self, session_id: str) -> str:
        return f"{self.prefix}:ses:{session_id}"

    def meta_key(self, session_id: str) -> str:
        return f"{self.prefix}:ses:{session_id}:meta"

    def follow_key(self, session_id: str) -> str:
        return f"{self.prefix}:ses:{session_id}:follow"

    def channel(self, instance: str) -> str:
        return f"{self.prefix}:inst:{instance}"

    def expire(self, pipe: Any, session_id: str) -> None:
        pipe.pexpire(self.stream_key(session_id), self.ttl_ms)
        pipe.pexpire(self.meta_key(session_id), self.ttl_ms)

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        self.writer = JournalWriter(self.redis, self.ttl_ms)
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self.channel(self.instance))
        self._listener = asyncio.create_task(self._listen(), name="sessions-listen")

    async def close(self) -> None:
        tasks = [*self._followers.values(), *([self._listener] if self._listener else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for journal in list(self.journals.values()):
            await journal.flush()
        await self.writer.close()
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()

    async def refresh(self) -> None:
        """Keep the sessions this process holds alive in Redis while carried or running; forget the
        ones swept here. The TTLs are set by the journal writer's next turn, with the events of that
        turn (one script call, not a command per key)."""
        for journal in [j for j in self.journals.values() if j.session.closed]:
            self.journals.pop(journal.session.id, None)
        for journal in self.journals.values():
            if journal.session.attached or journal.session.state.run is not None:
                journal.renew()

    # --- the home's side --------------------------------------------------------------------------

    async def hold(self, session: Session) -> None:
        """This process is the session's home from now on: its events go to its stream."""
        async with self.redis.pipeline(transaction=False) as pipe:  # one round trip, not two
            pipe.hset(
                self.meta_key(session.id),
                mapping={
                    "user_id": session.user_id,
                    "conversation_id": session.conversation_id,
                    "home": self.instance,
                    "run_id": "",
                },
            )
            pipe.pexpire(self.meta_key(session.id), self.ttl_ms)
            await pipe.execute()
        journal = StreamJournal(self, session)
        session.journal = journal
        session.forward = None
        self.homes.pop(session.id, None)
        self.journals[session.id] = journal
        for event in self._held_back.pop(session.id, []):
            session.emit(event)

    def run_started(self, session: Session, run_id: str, message_id: str, prompt: str) -> None:
        """Recorded with the run's first events, in the same write: a process that dies right after
        starting a run still leaves the run for the next holder to end (ASP-RES-007)."""
        journal = self.journals.get(session.id)
        if journal is not None:
            journal.note({"run_id": run_id, "message_id": message_id, "prompt": prompt})

    def after_run(self, session: Session) -> None:
        spawn_logged(self.run_ended(session))

    async def run_ended(self, session: Session) -> None:
        """After the run's complete was emitted: once it is written, clear the run; a waiting
        handover happens now."""
        journal = self.journals.get(session.id)
        if session.id in self.handovers:  # it leaves: what a pin holds back is written first
            session.release_all()
        if journal is not None:
            await session.flush()
            journal.note({"run_id": ""})
            await journal.flush()
        waiting = self.handovers.pop(session.id, None)
        if waiting is not None:
            await self._hand_over(session, *waiting)

    def release(self, session: Session) -> None:
        """The session is discarded here (a connection's fresh session replaced by a resumed one)."""
        self.journals.pop(session.id, None)

    def cancel(self, session: Session, run_id: str) -> bool:
        """A cancel for a run another process runs: sent to it. False when the run is not elsewhere."""
        home = self.homes.get(session.id)
        if home is None or session.forward is None:
            return False
        self.publish(home, {"op": "cancel", "run_id": run_id})
        return True

    async def _hand_over(self, session: Session, to: str, token: str) -> None:
        """Give the session to the process `to` (it asked, with `token`): everything pending is
        sequenced and written, a pin's held-back events included (a resume here can no longer
        attach to it), then the marker naming the new home; then it is forgotten here."""
        self.moving[session.id] = to
        session.release_all()
        journal = self.journals.pop(session.id, None)
        await session.flush()
        if journal is not None:
            await journal.flush()
        session.journal = None
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(self.stream_key(session.id), {"handover": to, "token": token}, id=f"{session.seq}-*")
            pipe.hset(self.meta_key(session.id), "home", to)
            self.expire(pipe, session.id)
            await pipe.execute()
        self.hub.sessions.discard(session.id)
        await session.close()
        self.moving.pop(session.id, None)
        log.info("session handed over to %s", to, extra=_ctx(session))

    async def _listen(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=5.0)
                if message is None or message.get("type") != "message":
                    continue
                await self._on_message(orjson.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("session channel message failed")

    async def _on_message(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "cancel":
            self.hub.cancel_run(str(message["run_id"]))
            return
        session_id = str(message.get("session"))
        session = self.hub.sessions.sessions.get(session_id)
        if session is None or session_id not in self.journals:  # not (or no longer) held here
            if op != "emit":
                return  # a handover request: the asker reads the stream's marker
            if session_id in self._followers:  # being handed to this process: sequenced once held
                self._held_back.setdefault(session_id, []).append(message["event"])
                return
            home = self.moving.get(session_id) or await self.redis.hget(self.meta_key(session_id), "home")
            if home and home != self.instance and message.get("hops", 0) < 3:  # moved: pass it on
                self.publish(home, {**message, "hops": message.get("hops", 0) + 1})
            return
        if op == "emit":
            session.emit(message["event"])
        elif op == "handover":
            asked = (str(message["to"]), str(message["token"]))
            if session.state.run is None:
                await self._hand_over(session, *asked)
            else:
                self.handovers[session.id] = asked

    # --- the resuming process's side --------------------------------------------------------------

    def local(self, session: Session) -> bool:
        """Whether this process holds `session` or is following it (else a stale copy)."""
        return session.id in self.journals or session.id in self._followers

    async def find(self, session_id: str, last_seq: int) -> Remote | None:
        """The session as Redis knows it; None when it is unknown or expired.

        The client may have seen events its home sent but had not written yet (one writer turn, a
        few milliseconds): while the home lives, this waits up to CATCH_UP_S for its writes to reach
        `last_seq`; a `last_seq` still beyond then is beyond the session (ASP-RES-006). Events a
        dead home never wrote are lost: the session then goes on after the client's `last_seq`, so
        what follows has new seq numbers for it (ASP-RES-007). A session whose home is this process
        but which it no longer has is taken over as if its home had died.
        """
        meta = await self.redis.hgetall(self.meta_key(session_id))
        if not meta:
            return None
        key = self.stream_key(session_id)
        home_alive = meta["home"] != self.instance and await self.alive(meta["home"])
        deadline = time.monotonic() + CATCH_UP_S
        while True:
            newest = await self.redis.xrevrange(key, count=1)
            last = _seq(newest[0][0]) if newest else 0
            if last >= last_seq or not home_alive or time.monotonic() > deadline:
                break
            await self.redis.xread({key: newest[0][0] if newest else "0-0"}, block=200, count=1)
            home_alive = await self.alive(meta["home"])
        if not home_alive:
            last = max(last, last_seq)
        meta = await self.redis.hgetall(self.meta_key(session_id)) or meta
        # Read last, whole (trimmed to replay_window, it is at most that many entries and markers):
        # the resume is decided on its oldest entry, and the mirror replays these very entries
        # first (`_tail`), then reads on after them. Only the oldest, read here and the replay read
        # by the follower a round trip later, the home could trim last_seq + 1 away in between: a
        # resume accepted at the window's edge was then closed 4004 (fell out of the replay window).
        # The follower's position is set in the same transaction, before the read, at the newest
        # entry seen so far (at most what the read returns): from this read on, the home keeps what
        # comes after it (see the module's docstring). The key names this resume by a token of its
        # own: a refused resume releases it (`unfollow`), the mirror of an accepted one reads on it.
        token = secrets.token_hex(8)
        async with self.redis.pipeline(transaction=True) as pipe:
            position = newest[0][0] if newest else "0-0"
            pipe.set(self.follow_key(session_id), f"{position} {token}", px=FOLLOW_TTL_MS)
            pipe.xrange(key)
            _, kept = await pipe.execute()
        return Remote(
            session_id=session_id,
            user_id=meta["user_id"],
            conversation_id=meta["conversation_id"],
            home=meta["home"],
            home_alive=home_alive,
            run_id=meta.get("run_id", ""),
            message_id=meta.get("message_id", ""),
            prompt=meta.get("prompt", ""),
            last_seq=last,
            oldest_seq=_seq(kept[0][0]) if kept else None,
            kept=tuple((entry_id, fields) for entry_id, fields in kept),
            follow_token=token,
        )

    async def unfollow(self, remote: Remote) -> bool:
        """Release the follower's position `find` set for `remote` (its resume was refused, or its
        mirror stopped following) at once rather than at its expiry, unless another follower has
        taken the key since: then it is left alone. True when this call deleted the key."""
        key = self.follow_key(remote.session_id)
        return bool(await self._release_follow(keys=[key], args=[remote.follow_token]))

    def mirror(self, remote: Remote, after_seq: int) -> Session:
        """A local session that replays and tails `remote`'s stream after `after_seq`, then takes it
        over (see the module's docstring). The caller attaches its connection with `after_seq`."""
        stale = self.hub.sessions.sessions.get(remote.session_id)
        if stale is not None:  # an old local copy whose home moved away since
            self.hub.sessions.discard(stale.id)
            spawn_logged(stale.close())
        session = Session(
            user_id=remote.user_id,
            conversation_id=remote.conversation_id,
            capabilities=self.hub.capabilities,
            limits=self.hub.delivery_limits(),
            session_id=remote.session_id,
        )
        session.seq = after_seq
        if remote.run_id:
            session.state.run = core.RunSlot(remote.run_id, remote.message_id)
        self.hub.sessions.add(session)
        self._route(session, remote.home)
        self._followers[session.id] = asyncio.create_task(
            self._follow(session, remote), name=f"follow-{session.id}"
        )
        return session

    def _route(self, session: Session, home: str) -> None:
        """Until this process holds `session`, its events are sequenced by `home`."""
        self.homes[session.id] = home
        session.forward = lambda event: self.publish(
            home, {"op": "emit", "session": session.id, "event": event}
        )

    def publish(self, instance: str, message: dict[str, Any]) -> None:
        spawn_logged(self.redis.publish(self.channel(instance), orjson.dumps(message)))

    async def _follow(self, session: Session, remote: Remote) -> None:
        try:
            await self._tail(session, remote)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("following a session held elsewhere failed", extra=_ctx(session))
            await self.hold(session)
        finally:
            self._followers.pop(session.id, None)
            spawn_logged(self.unfollow(remote))

    async def _tail(self, session: Session, remote: Remote) -> None:
        key = self.stream_key(session.id)
        home = remote.home
        cursor = f"{session.seq}-0"  # after the client's last_seq, markers at that seq included
        # First what the resume was decided on (read by `find`), then what the stream has after it.
        kept = [(entry_id, fields) for entry_id, fields in remote.kept if _after(entry_id, cursor)]
        token = secrets.token_hex(8)
        asking = {"op": "handover", "session": session.id, "to": self.instance}
        if remote.home_alive:
            self.publish(home, {**asking, "token": token})
        while True:
            if kept:
                entries, kept = kept, []
            else:
                block = None if not remote.home_alive else TAIL_BLOCK_MS
                # The position first, in the same round trip: it holds the home's trim after it.
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.set(self.follow_key(session.id), f"{cursor} {remote.follow_token}", px=FOLLOW_TTL_MS)
                    pipe.xread({key: cursor}, block=block, count=500)
                    _, reply = await pipe.execute()
                entries = reply[0][1] if reply else []
            for entry_id, fields in entries:
                cursor = entry_id
                if "handover" in fields:
                    if fields["handover"] == self.instance and fields.get("token") == token:
                        await self.hold(session)
                        return
                    if fields["handover"] != self.instance:  # handed to another process: ask that one
                        home = fields["handover"]
                        self._route(session, home)
                        asking = {
                            "op": "handover",
                            "session": session.id,
                            "to": self.instance,
                            "token": token,
                        }
                        self.publish(home, asking)
                    continue
                text = fields["e"]
                session.relay(_seq(entry_id), text)
                if session.state.run is not None and '"complete"' in text:
                    event = orjson.loads(text)
                    if event.get("type") == "complete" and event.get("run_id") == session.state.run.run_id:
                        session.state.run = None
                        session.state.last_run_end = time.monotonic()
                        session.notify()
            if entries:
                continue
            if not remote.home_alive or not await self.alive(home):
                await self._take_over_from_dead(session, remote)
                return

    async def _take_over_from_dead(self, session: Session, remote: Remote) -> None:
        """The home died: this process holds the session; a run it left active ends with error
        internal_error and complete (finish error), its streamed part stored first."""
        log.warning("the process holding this session died; taking it over", extra=_ctx(session))
        slot = session.state.run
        await self.hold(session)
        if slot is None:
            return
        entries = await self.redis.xrange(self.stream_key(session.id))
        streamed = [orjson.loads(fields["e"]) for _, fields in entries if "e" in fields]
        exchange = rebuild_exchange(slot.run_id, slot.message_id, remote.prompt, streamed)
        with contextlib.suppress(Exception):
            await self.hub.store.append(session.conversation_id, session.user_id, exchange)
        for effect in core.on_run_end(
            session.state, slot.run_id, core.RunOutcome("error", "internal_error"), time.monotonic()
        ):
            if isinstance(effect, Send):
                session.emit(effect.event)
        await self.run_ended(session)
        session.notify()


def rebuild_exchange(run_id: str, message_id: str, prompt: str, streamed: list[Event]) -> Exchange:
    """The exchange of a run whose process died, from the events it streamed (ASP-HIS-008): the
    prompt, the text as streamed, each tool call with its result (unanswered ones interrupted)."""
    stored: list[ModelMessage] = [ModelRequest(parts=[UserPromptPart(content=prompt)])]
    response: list[ModelResponsePart] = []
    results = {
        e["tool_call_id"]: e for e in streamed if e.get("type") == "tool_result" and e.get("run_id") == run_id
    }
    for event in streamed:
        if event.get("run_id") != run_id:
            continue
        if event["type"] == "text_delta":
            if response and isinstance(response[-1], TextPart):
                response[-1] = TextPart(content=response[-1].content + event["delta"])
            else:
                response.append(TextPart(content=event["delta"]))
        elif event["type"] == "tool_call":
            call_id = event["tool_call_id"]
            response.append(
                ToolCallPart(tool_name=event["name"], args=event["arguments"], tool_call_id=call_id)
            )
            stored.append(ModelResponse(parts=response))
            response = []
            result = results.get(call_id)
            content = result["content"] if result is not None else "interrupted"
            ok = result is not None and not result.get("is_error")
            outcome: Literal["success", "interrupted"] = "success" if ok else "interrupted"
            stored.append(
                ModelRequest(
                    parts=[
                        ToolReturnPart(
                            tool_name=event["name"], content=content, tool_call_id=call_id, outcome=outcome
                        )
                    ]
                )
            )
    if response:
        stored.append(ModelResponse(parts=response))
    return Exchange(run_id, message_id, "error", tuple(stored))


def _after(entry_id: str, cursor: str) -> bool:
    """Whether the stream entry `entry_id` comes after `cursor` (both `{ms}-{n}`), as XREAD reads."""
    seq, _, n = entry_id.partition("-")
    cursor_seq, _, cursor_n = cursor.partition("-")
    return (int(seq), int(n)) > (int(cursor_seq), int(cursor_n))


def _seq(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def _ctx(session: Session) -> dict[str, Any]:
    return {"asp": {"session": session.id, "user": session.user_id}}


_tasks: set[asyncio.Task[Any]] = set()


def spawn_logged(awaitable: Awaitable[Any]) -> None:
    async def runner() -> None:
        try:
            await awaitable
        except Exception:
            log.exception("background Redis call failed")

    task = asyncio.create_task(runner())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
