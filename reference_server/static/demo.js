// The demo page: a chat on asp-client.js. It keeps the token and the conversation id in
// localStorage, so a reload reconnects to the same conversation and shows its history.
//
// What the page itself decides (asp-client.js does the protocol):
// - one answer bubble per stretch of text: a tool call ends the bubble before it (its caret stops)
//   and text after the tool starts a new one; a run's end (complete, or its error) ends all of them;
// - a message typed while a run is in progress waits in the transcript ("queued") and is sent when
//   the run ends, one at a time, so the server never has to refuse it with run_in_progress;
// - the badge and the status line are drawn from one connection record, so they never disagree;
//   Stop is enabled only while a run is in progress on an open connection;
// - after a reconnect the restored history is the transcript: an answer it holds is shown once, from
//   it; after a failed resume (a server restart) an answer that was streaming and that the history
//   does not hold is replaced by a notice, as a reload would show it, never appended below it.
import { AspClient } from "/static/asp-client.js";

const $ = (id) => document.getElementById(id);
const stored = { token: localStorage.getItem("asp.token"), conversation: localStorage.getItem("asp.conversation") };
let client = null;
const bubbles = new Map(); // run_id -> the assistant bubble streaming now (text since the last tool call)
const tools = new Map(); // tool_call_id -> its list item
const pending = new Map(); // message id -> its user bubble: sent, not yet started
const waiting = []; // { text, item }: typed during a run, sent when it ends
let running = null; // run_id of the run in progress, as far as the page knows
const connection = { state: "idle", code: null, reason: "", delayMs: null, willReconnect: false };

function add(kind, text, attributes = {}) {
  const item = document.createElement("li");
  item.className = kind;
  item.textContent = text;
  for (const [key, value] of Object.entries(attributes)) item.dataset[key] = value;
  const list = $("transcript");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(item);
  if (atBottom) list.scrollTop = list.scrollHeight; // follow the stream unless the user scrolled up
  return item;
}

function follow() {
  const list = $("transcript");
  if (list.scrollHeight - list.scrollTop - list.clientHeight < 120) list.scrollTop = list.scrollHeight;
}

function bubbleFor(runId) {
  if (!bubbles.has(runId)) bubbles.set(runId, add("assistant", "", { run: runId, streaming: "true" }));
  return bubbles.get(runId);
}

function endBubble(runId) {
  const bubble = bubbles.get(runId);
  if (bubble) bubble.dataset.streaming = "false";
  bubbles.delete(runId);
}

function describeCall(event) {
  return `${event.name}(${JSON.stringify(event.arguments)})`;
}

// --- connection: one record, drawn in the badge, the status line and the buttons ------------------

function render() {
  const { state, code, delayMs, willReconnect, reason } = connection;
  const badge = $("state");
  badge.dataset.state = state;
  badge.textContent = state + (code && state !== "open" ? ` (${code})` : "");
  let status = "";
  if (state === "open" && client && client.session) {
    status = `signed in as ${client.session.user.id}; session ${client.session.session_id.slice(0, 12)}…`;
  } else if (state === "reconnecting" && willReconnect) {
    status = `connection lost (${code}); reconnecting in ${Math.round(delayMs / 100) / 10} s`;
  } else if (state === "connecting") {
    status = "connecting…";
  } else if (state === "closed" && code) {
    status = `connection closed (${code}${reason ? " " + reason : ""})`;
  } else if (state === "idle" && code) {
    status = `connection closed (${code}); it reopens when you send`;
  }
  $("status").textContent = status;
  $("status").dataset.code = code ?? "";
  $("stop").disabled = !(running && state === "open");
  $("send").textContent = running || pending.size ? "Queue" : "Send";
}

// --- runs ----------------------------------------------------------------------------------------

function runEnded(runId) {
  endBubble(runId);
  for (const item of tools.values()) {
    if (item.dataset.run === runId && item.dataset.status === "running") {
      item.dataset.status = "interrupted";
      item.textContent = item.textContent.replace(" running…", " (interrupted)");
    }
  }
  if (running === runId) running = null;
  render();
  sendNextWaiting();
}

function sendNextWaiting() {
  if (running || pending.size || !waiting.length) return;
  const { text, item } = waiting.shift();
  delete item.dataset.queued;
  item.dataset.pending = "true";
  $("transcript").append(item); // sent now: below the answer it waited for, above its own
  $("transcript").scrollTop = $("transcript").scrollHeight;
  pending.set(client.sendMessage(text), item);
  render();
}

function showHistory(messages) {
  // Runs still streaming (a resume continues them) keep their bubbles and tool items, unless the
  // history holds them already: asp-client.js then drops their replay, and the history shows them
  // once. Messages sent but not started, and those waiting for a run to end, stay below.
  const inHistory = new Set(messages.map((entry) => entry.run_id).filter(Boolean));
  for (const entry of messages) if (entry.message_id) pending.delete(entry.message_id);
  const live = [...bubbles.entries()].filter(([runId]) => !inHistory.has(runId));
  const liveTools = [...tools.entries()].filter(([, item]) => item.dataset.status === "running" && !inHistory.has(item.dataset.run));
  if (running && inHistory.has(running)) running = null;
  $("transcript").replaceChildren();
  bubbles.clear();
  tools.clear();
  for (const entry of messages) {
    if (entry.role === "tool") {
      const status = entry.is_error ? "failed" : "done";
      add("tool", `${entry.name}(${JSON.stringify(entry.arguments)}) → ${JSON.stringify(entry.content)}`, { status, run: entry.run_id || "" });
    } else {
      add(entry.role, entry.content, entry.run_id ? { run: entry.run_id, streaming: "false" } : {});
    }
  }
  add("notice", "history restored");
  for (const [callId, item] of liveTools) { tools.set(callId, item); $("transcript").append(item); }
  for (const [runId, bubble] of live) { bubbles.set(runId, bubble); $("transcript").append(bubble); }
  for (const item of pending.values()) $("transcript").append(item);
  for (const { item } of waiting) $("transcript").append(item);
  $("transcript").scrollTop = $("transcript").scrollHeight;
  render();
  sendNextWaiting(); // a run that ended while we were away is in the history: the next message goes
}

function resumeFailed() {
  // The server lost the session (a restart): what was streaming will not continue, and the history
  // just shown holds what the server kept of it. The page shows what a reload would: answers the
  // history does not hold go, with a notice in their place.
  let lost = 0;
  for (const bubble of bubbles.values()) { bubble.remove(); lost += 1; }
  bubbles.clear();
  for (const [callId, item] of tools) {
    if (item.dataset.status === "running") { item.remove(); tools.delete(callId); }
  }
  if (lost) add("notice", "the answer in progress was lost when the server restarted", { reason: "interrupted" });
  // A message sent before the restart that started no run and is not in the history was lost with
  // the server (one still in asp-client.js's queue is sent now, and is not lost).
  const unsent = new Set(client._queue.map((message) => message.id));
  for (const [messageId, item] of pending) {
    if (unsent.has(messageId)) continue;
    delete item.dataset.pending;
    item.dataset.refused = "lost in the restart";
    pending.delete(messageId);
  }
  running = null;
  render();
  sendNextWaiting();
}

function start(token) {
  $("signin").hidden = true;
  $("chat").hidden = false;
  $("signout").hidden = false;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  client = new AspClient({ url: `${scheme}//${location.host}/ws/chat`, token, conversationId: stored.conversation });
  window.aspClient = client; // for the browser tests and curious developers
  client.on("state", ({ state, code, reason, delayMs }) => {
    Object.assign(connection, { state, code: code ?? (state === "open" ? null : connection.code) });
    if (reason !== undefined) connection.reason = reason;
    if (delayMs !== undefined) connection.delayMs = delayMs;
    if (state === "open") Object.assign(connection, { code: null, reason: "", willReconnect: false });
    render();
  });
  client.on("close", ({ code, reason, willReconnect, delayMs }) => {
    // Every close updates the record, also the second and later failed attempts while the state
    // stays "reconnecting" (asp-client.js emits no state event for those).
    Object.assign(connection, { code, reason: reason || "", willReconnect, delayMs: delayMs ?? null });
    if (code === 4002) add("notice", "This tab was superseded by a newer one; it will not reconnect.");
    else if (code === 4001) add("error", "Not authorised: sign in again.");
    render();
  });
  client.on("session", (session) => {
    localStorage.setItem("asp.conversation", session.conversation_id);
    render();
  });
  client.on("history", (event) => showHistory(event.messages));
  client.on("resume", ({ ok }) => {
    add("notice", ok ? "stream resumed" : "reconnected (new session)");
    if (!ok) resumeFailed();
  });
  client.on("run_started", (event) => {
    const item = pending.get(event.message_id);
    if (item) delete item.dataset.pending;
    pending.delete(event.message_id);
    running = event.run_id;
    bubbleFor(event.run_id);
    render();
  });
  client.on("text_delta", (event) => {
    bubbleFor(event.run_id).textContent += event.delta;
    follow();
  });
  client.on("tool_call", (event) => {
    endBubble(event.run_id); // the text before the tool is complete; text after it gets a new bubble
    tools.set(event.tool_call_id, add("tool", `${describeCall(event)} running…`, { status: "running", call: event.tool_call_id, run: event.run_id }));
  });
  client.on("tool_result", (event) => {
    const item = tools.get(event.tool_call_id);
    if (!item) return;
    item.dataset.status = event.is_error ? "failed" : "done";
    item.textContent = item.textContent.replace(" running…", ` → ${JSON.stringify(event.content)}`);
  });
  client.on("complete", (event) => {
    if (event.finish_reason !== "stop") add("notice", `run ${event.finish_reason}`, { reason: event.finish_reason });
    runEnded(event.run_id);
  });
  client.on("error", (event) => {
    if (event.code === "shutting_down") add("notice", "the server is restarting: this answer was cut short", { code: event.code });
    else add("error", `${event.code}: ${event.message}`, { code: event.code });
    if (event.message_id && pending.has(event.message_id)) {
      pending.get(event.message_id).dataset.refused = event.code;
      delete pending.get(event.message_id).dataset.pending;
      pending.delete(event.message_id); // refused: it starts no run
      render();
      sendNextWaiting();
    }
  });
  client.connect();
}

function signedIn(token) {
  localStorage.setItem("asp.token", token);
  localStorage.removeItem("asp.conversation");
  stored.conversation = null;
  start(token);
}

// Development sign-in exists only when the server runs `asp serve --dev`; otherwise paste a token.
const devSignIn = document.body.dataset.devSignIn === "on";
$("signin-form").hidden = !devSignIn;
$("token-form").hidden = devSignIn;

$("token-form").addEventListener("submit", (submitted) => {
  submitted.preventDefault();
  signedIn($("token").value.trim());
});

$("signin-form").addEventListener("submit", async (submitted) => {
  submitted.preventDefault();
  const response = await fetch("/dev/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user: $("username").value }),
  });
  if (!response.ok) {
    $("signin").querySelector(".hint").textContent = `sign-in failed (${response.status})`;
    return;
  }
  const { token } = await response.json();
  signedIn(token);
});

$("composer").addEventListener("submit", (submitted) => {
  submitted.preventDefault();
  const text = $("prompt").value.trim();
  if (!text) return;
  $("prompt").value = "";
  if (running || pending.size) { // a run is in progress: the message waits for its end
    const item = add("user", text, { queued: "true" });
    waiting.push({ text, item });
    $("transcript").scrollTop = $("transcript").scrollHeight;
    render();
    return;
  }
  const item = add("user", text, { pending: "true" });
  $("transcript").scrollTop = $("transcript").scrollHeight;
  pending.set(client.sendMessage(text), item);
  render();
});

$("stop").addEventListener("click", () => client.cancel(running));
$("signout").addEventListener("click", () => {
  localStorage.clear();
  client.close();
  location.reload();
});

if (stored.token) start(stored.token);
