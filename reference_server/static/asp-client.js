// asp-client.js: a dependency-free ES module client for the Agent Stream Protocol (ASP) v1.
//
//   import { AspClient } from "/static/asp-client.js";
//   const client = new AspClient({ url: "ws://host/ws/chat", token });
//   client.on("text_delta", (event) => append(event.delta));
//   client.on("state", ({ state }) => show(state));
//   client.connect();
//   client.sendMessage("Hello");
//
// What it does for you, following spec/PROTOCOL.md:
// - carries the token in the `asp.token.` subprotocol, never in the URL (ASP-AUTH-008);
// - reconnects with exponential backoff and full jitter as the close-code table advises
//   (ASP-CLS-003/004), never after an auth failure (4001) or a superseded connection (4002);
// - resumes the previous session from the last seq it saw and drops replayed duplicates
//   (ASP-RES-005); treats a seq gap as a broken connection (ASP-ENV-003);
// - drops from a resume's replay the events of a run that the history it was just sent already
//   holds complete (its run_id is in the history, ASP-HIS-009), so no answer is shown twice;
// - sends application pings and declares the connection dead after two silent intervals
//   (ASP-HB-004), since browsers cannot see WebSocket ping frames;
// - queues messages typed while (re)connecting and sends them once the session is open.
// Types: asp-client.d.ts (this API) and asp-messages.d.ts (generated from spec/schema).

import { CLOSE_CODES, SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX } from "./asp-protocol.js";

const DEFAULT_BACKOFF = { baseMs: 500, factor: 2, capMs: 30000, resetAfterMs: 10000 };

export class AspClient {
  constructor({
    url,
    token,
    conversationId = null,
    resume = true,
    backoff = {},
    WebSocketImpl = globalThis.WebSocket,
    random = Math.random,
  }) {
    this.url = url;
    this.token = token;
    this.conversationId = conversationId;
    this.resumeEnabled = resume;
    this.backoff = { ...DEFAULT_BACKOFF, ...backoff };
    this.WebSocketImpl = WebSocketImpl;
    this.random = random;
    this.state = "idle"; // idle | connecting | open | reconnecting | closed
    this.session = null; // the current session event
    this.lastSeq = 0; // last seq delivered of the current session
    this.activeRun = null; // run_id of the run in progress, if any
    this.attempt = 0;
    this.closedReason = null;
    this._listeners = new Map();
    this._queue = [];
    this._socket = null;
    this._timers = { reconnect: null, ping: null };
    this._openedAt = 0;
    this._lastEventAt = 0;
    this._previous = null; // { sessionId, lastSeq } to resume after a reconnect
    this._awaitingResume = false;
    this._resumedFrom = 0; // the last_seq of the resume in flight
    this._storedRuns = new Set(); // run_ids of the history this connection was sent: complete runs
    this._brokenByUs = false;
    this._pingCounter = 0;
    this._messageCounter = 0;
    this._iterators = new Set();
  }

  // --- events ------------------------------------------------------------------------------

  /** Subscribe to an event type ("text_delta", ..., "*" for every event, "state", "close"). */
  on(type, handler) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(handler);
    return () => this._listeners.get(type).delete(handler);
  }

  /** Every server event as an async iterator, until close(). */
  async *events() {
    const buffer = [];
    let wake = null;
    const iterator = { push: (event) => { buffer.push(event); if (wake) { wake(); wake = null; } }, done: false };
    this._iterators.add(iterator);
    try {
      while (!iterator.done) {
        if (buffer.length) { yield buffer.shift(); continue; }
        await new Promise((resolve) => { wake = resolve; });
      }
    } finally {
      this._iterators.delete(iterator);
    }
  }

  _emit(type, payload) {
    for (const key of [type, "*"]) {
      if (key === "*" && (type === "state" || type === "close" || type === "resume")) continue;
      for (const handler of this._listeners.get(key) || []) {
        try { handler(payload); } catch (error) { console.error("asp-client listener failed", error); }
      }
    }
  }

  _setState(state, detail = {}) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", { state, ...detail });
  }

  // --- connecting ------------------------------------------------------------------------------

  connect() {
    if (this.state === "open" || this.state === "connecting") return;
    clearTimeout(this._timers.reconnect);
    this.closedReason = null;
    this._setState(this.attempt ? "reconnecting" : "connecting");
    const target = new URL(this.url);
    if (this.conversationId) target.searchParams.set("conversation_id", this.conversationId);
    let socket;
    try {
      socket = new this.WebSocketImpl(target.toString(), [SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX + this.token]);
    } catch (error) {
      this._scheduleReconnect(1006, String(error));
      return;
    }
    this._socket = socket;
    this._openedAt = 0; // an attempt that never opens did not live: it resets no backoff
    this._storedRuns = new Set();
    socket.onopen = () => { this._openedAt = Date.now(); this._lastEventAt = Date.now(); };
    socket.onmessage = (message) => this._receive(socket, message.data);
    socket.onclose = (event) => this._closed(socket, event.code, event.reason);
    // Browsers follow an error with a close event in the same task; Node 20's WebSocket (undici)
    // does not after a refused or failed handshake, which left the client waiting for ever. The
    // fallback runs after that task and does nothing once the close event came.
    socket.onerror = () => setTimeout(() => this._closed(socket, 1006, "connection failed"), 0);
  }

  close() {
    this.closedReason = "client";
    clearTimeout(this._timers.reconnect);
    this._stopPinging();
    if (this._socket) this._socket.close(1000, "client closed");
    this._setState("closed", { code: 1000, reason: "client closed" });
    for (const iterator of this._iterators) { iterator.done = true; iterator.push(null); }
  }

  _closed(socket, code, reason) {
    if (socket !== this._socket) return;
    this._socket = null;
    if (this._brokenByUs) { // we closed it ourselves because it was broken: reconnect as after a drop
      this._brokenByUs = false;
      code = 1006;
    }
    this._stopPinging();
    if (this.session) this._previous = { sessionId: this.session.session_id, lastSeq: this.lastSeq };
    this.session = null;
    if (this.closedReason === "client") return;
    if (Date.now() - this._openedAt >= this.backoff.resetAfterMs && this._openedAt) this.attempt = 0;
    this._scheduleReconnect(code, reason);
  }

  _scheduleReconnect(code, reason) {
    const advice = (CLOSE_CODES[code] || CLOSE_CODES[1006]).reconnect;
    if (advice === "never") {
      this.closedReason = code;
      this._emit("close", { code, reason, willReconnect: false });
      this._setState("closed", { code, reason });
      return;
    }
    if (advice === "on_demand") {
      this._emit("close", { code, reason, willReconnect: false, onDemand: true });
      this._setState("idle", { code, reason });
      return;
    }
    const ceiling = Math.min(this.backoff.capMs, this.backoff.baseMs * this.backoff.factor ** this.attempt);
    // Full jitter over the ceiling, after the code's floor (1013: 1000 ms), so clients refused
    // together do not all come back together.
    const minimum = (CLOSE_CODES[code] && CLOSE_CODES[code].min_delay_ms) || 0;
    const delayMs = minimum + Math.round(this.random() * ceiling);
    this.attempt += 1;
    this._emit("close", { code, reason, willReconnect: true, delayMs });
    this._setState("reconnecting", { code, reason, delayMs });
    this._timers.reconnect = setTimeout(() => this.connect(), delayMs);
  }

  // --- receiving ---------------------------------------------------------------------------------

  _receive(socket, data) {
    if (socket !== this._socket) return;
    this._lastEventAt = Date.now();
    let event;
    try { event = JSON.parse(data); } catch { return this._broken("unparsable frame"); }
    if (event.type === "session") return this._opened(event);
    if (event.type === "resumed") {
      this._awaitingResume = false;
      this.session = { ...this.session, session_id: event.session_id };
      this.lastSeq = this._resumedFrom; // what we have, whatever the server replays from
      this._emit("resume", { ok: true, event });
      this._deliver(event, false);
      this._flushQueue();
      return;
    }
    if (typeof event.seq === "number") {
      if (event.seq <= this.lastSeq) return; // a replayed duplicate (ASP-RES-005)
      if (event.seq > this.lastSeq + 1 && !this._awaitingResume) return this._broken(`seq gap after ${this.lastSeq}`);
      this.lastSeq = event.seq;
    }
    if (event.type === "history") {
      for (const entry of event.messages || []) if (entry.run_id) this._storedRuns.add(entry.run_id);
      if (this._storedRuns.has(this.activeRun)) this.activeRun = null;
    } else if (event.run_id && this._storedRuns.has(event.run_id) && !event.type.startsWith("x-")) {
      return; // the replay of a run the history already holds complete: shown once, from history
    }
    if (event.type === "error" && event.code === "resume_failed" && this._awaitingResume) {
      // Expected after a server restart or a long absence: the history event already rebuilt the
      // conversation, so this is reported as a resume outcome, not as an error to show.
      this._awaitingResume = false;
      this._emit("resume", { ok: false, event });
      this._flushQueue();
      return;
    }
    this._deliver(event, true);
  }

  _deliver(event, track) {
    if (track) {
      if (event.type === "run_started") this.activeRun = event.run_id;
      if (event.type === "complete" && event.run_id === this.activeRun) this.activeRun = null;
    }
    this._emit(event.type, event);
    for (const iterator of this._iterators) iterator.push(event);
  }

  _opened(session) {
    this.session = session;
    this.lastSeq = session.seq;
    this.conversationId = session.conversation_id;
    this._setState("open", { session });
    this._deliver(session, false);
    this._startPinging(session.limits.heartbeat_interval_ms);
    const previous = this._previous;
    this._previous = null;
    const canResume = this.resumeEnabled && previous && session.capabilities.includes("resume");
    if (canResume) {
      this._awaitingResume = true;
      this._resumedFrom = previous.lastSeq;
      this._socket.send(JSON.stringify({ type: "resume", session_id: previous.sessionId, last_seq: previous.lastSeq }));
    } else {
      this._flushQueue();
    }
  }

  _broken(why) {
    console.warn("asp-client: connection treated as broken:", why);
    if (!this._socket) return;
    this._brokenByUs = true;
    this._socket.close(1000, "client: " + why.slice(0, 100));
  }

  // --- heartbeats --------------------------------------------------------------------------------

  _startPinging(intervalMs) {
    this._stopPinging();
    this._timers.ping = setInterval(() => {
      if (!this._socket) return;
      if (Date.now() - this._lastEventAt > 2 * intervalMs) return this._broken("no event for two heartbeat intervals");
      this._pingCounter += 1;
      this._socket.send(JSON.stringify({ type: "ping", id: `hb-${this._pingCounter}` }));
    }, intervalMs);
  }

  _stopPinging() {
    clearInterval(this._timers.ping);
    this._timers.ping = null;
  }

  // --- sending -----------------------------------------------------------------------------------

  /** Send any client message; queued (never dropped) while the session is not open. */
  send(message) {
    if (this.state === "open" && this._socket && !this._awaitingResume) {
      this._socket.send(JSON.stringify(message));
    } else {
      this._queue.push(message);
      if (this.state === "idle" && this.closedReason === null) this.connect(); // on-demand reconnect (4003)
    }
    return message.id;
  }

  sendMessage(content) {
    this._messageCounter += 1;
    const id = `m-${Date.now().toString(36)}-${this._messageCounter}`;
    return this.send({ type: "message", id, content });
  }

  cancel(runId = this.activeRun) {
    return this.send(runId ? { type: "cancel", run_id: runId } : { type: "cancel" });
  }

  get queued() {
    return this._queue.length;
  }

  _flushQueue() {
    while (this._queue.length && this.state === "open" && this._socket) {
      this._socket.send(JSON.stringify(this._queue.shift()));
    }
  }
}
