// The demo page: a chat on asp-client.js. It keeps the token and the conversation id in
// localStorage, so a reload reconnects to the same conversation and shows its history.
import { AspClient } from "/static/asp-client.js";

const $ = (id) => document.getElementById(id);
const stored = { token: localStorage.getItem("asp.token"), conversation: localStorage.getItem("asp.conversation") };
let client = null;
const bubbles = new Map(); // run_id -> the assistant bubble being streamed
const tools = new Map(); // tool_call_id -> its list item
const pending = new Map(); // message id -> text, sent but not yet started (queued while offline)

function add(kind, text, attributes = {}) {
  const item = document.createElement("li");
  item.className = kind;
  item.textContent = text;
  for (const [key, value] of Object.entries(attributes)) item.dataset[key] = value;
  $("transcript").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function bubbleFor(runId) {
  if (!bubbles.has(runId)) bubbles.set(runId, add("assistant", "", { run: runId, streaming: "true" }));
  return bubbles.get(runId);
}

function describeCall(event) {
  return `${event.name}(${JSON.stringify(event.arguments)})`;
}

function showHistory(messages) {
  // Runs still streaming (a resume continues them) keep their bubbles and tool items, unless the
  // history holds them already complete: asp-client.js then drops their replay, and the history
  // shows them once.
  const stored = new Set(messages.map((entry) => entry.run_id).filter(Boolean));
  for (const entry of messages) if (entry.message_id) pending.delete(entry.message_id);
  const live = [...bubbles.entries()].filter(([runId, bubble]) => bubble.dataset.streaming === "true" && !stored.has(runId));
  const liveTools = [...tools.entries()].filter(([, item]) => item.dataset.status === "running" && !stored.has(item.dataset.run));
  $("transcript").replaceChildren();
  bubbles.clear();
  tools.clear();
  for (const entry of messages) {
    if (entry.role === "tool") {
      const status = entry.is_error ? "failed" : "done";
      add("tool", `${entry.name}(${JSON.stringify(entry.arguments)}) → ${JSON.stringify(entry.content)}`, { status });
    } else {
      add(entry.role, entry.content);
    }
  }
  add("notice", "history restored");
  for (const text of pending.values()) add("user", text, { pending: "true" });
  for (const [callId, item] of liveTools) { tools.set(callId, item); $("transcript").append(item); }
  for (const [runId, bubble] of live) { bubbles.set(runId, bubble); $("transcript").append(bubble); }
  $("stop").disabled = !client.activeRun;
}

function start(token) {
  $("signin").hidden = true;
  $("chat").hidden = false;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  client = new AspClient({ url: `${scheme}//${location.host}/ws/chat`, token, conversationId: stored.conversation });
  window.aspClient = client; // for the browser tests and curious developers
  client.on("state", ({ state, code }) => {
    $("state").dataset.state = state;
    $("state").textContent = state + (code ? ` (${code})` : "");
  });
  client.on("close", ({ code, reason, willReconnect, delayMs }) => {
    if (code === 4002) add("notice", "This tab was superseded by a newer one; it will not reconnect.");
    else if (code === 4001) add("error", "Not authorised: sign in again.");
    else if (willReconnect) $("status").textContent = `connection closed (${code}); reconnecting in ${delayMs} ms`;
    else $("status").textContent = `connection closed (${code} ${reason})`;
  });
  client.on("session", (session) => {
    localStorage.setItem("asp.conversation", session.conversation_id);
    $("status").textContent = `signed in as ${session.user.id}; session ${session.session_id.slice(0, 12)}…`;
  });
  client.on("history", (event) => showHistory(event.messages));
  client.on("resume", ({ ok }) => add("notice", ok ? "stream resumed" : "reconnected (new session)"));
  client.on("run_started", (event) => {
    pending.delete(event.message_id);
    $("stop").disabled = false;
    bubbleFor(event.run_id);
  });
  client.on("text_delta", (event) => { bubbleFor(event.run_id).textContent += event.delta; });
  client.on("tool_call", (event) => {
    tools.set(event.tool_call_id, add("tool", `${describeCall(event)} running…`, { status: "running", call: event.tool_call_id, run: event.run_id }));
    bubbles.delete(event.run_id); // text after the tool goes in a new bubble
  });
  client.on("tool_result", (event) => {
    const item = tools.get(event.tool_call_id);
    if (!item) return;
    item.dataset.status = event.is_error ? "failed" : "done";
    item.textContent = item.textContent.replace(" running…", ` → ${JSON.stringify(event.content)}`);
  });
  client.on("complete", (event) => {
    $("stop").disabled = true;
    for (const [runId, bubble] of bubbles) if (runId === event.run_id) bubble.dataset.streaming = "false";
    if (event.finish_reason !== "stop") add("notice", `run ${event.finish_reason}`, { reason: event.finish_reason });
  });
  client.on("error", (event) => add("error", `${event.code}: ${event.message}`, { code: event.code }));
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
  add("user", text);
  pending.set(client.sendMessage(text), text);
  $("prompt").value = "";
});

$("stop").addEventListener("click", () => client.cancel());
$("signout").addEventListener("click", () => {
  localStorage.clear();
  client.close();
  location.reload();
});

if (stored.token) start(stored.token);
