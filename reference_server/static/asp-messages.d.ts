// ASP 1.1 message types, generated from spec/schema by `python -m spec.typescript`.
// Do not edit: regenerate. tests/spec/test_typescript.py fails when this file drifts.

/** Position of the event in its session: 1 for the first event, +1 for each next one. */
export type Seq = number;

/** An opaque identifier: 1 to 128 characters of A-Z a-z 0-9 _ . : - starting with a letter or digit. */
export type Identifier = string;

/** Identifier of a client message, chosen by the client or minted by the server. */
export type MessageId = Identifier;

/** Identifier of a run, unique within its session. */
export type RunId = Identifier;

/** Identifier of a session; unguessable. */
export type SessionId = Identifier;

/** Identifier of a stored conversation. */
export type ConversationId = Identifier;

/** Identifier of a tool call, unique within its run. */
export type ToolCallId = Identifier;

export type ToolName = string;

export type Capability = "history" | "cancel" | "resume" | "reasoning" | "tool_call_deltas" | "fixtures" | `x-${string}`;

/** Only the new text: never a repetition of text already sent. */
export type Delta = string;

export type Usage = {
  input_tokens?: number;
  output_tokens?: number;
  requests?: number;
  [vendor: `x-${string}`]: unknown;
};

export type HistoryEntry = {
  role: "user";
  content: string;
  message_id?: MessageId;
  /** Since 1.1: the run that answered this message (ASP-HIS-009). */
  run_id?: RunId;
  /** Since 1.1: true when the server shortened this entry (its content keeps its beginning) to fit max_event_bytes (ASP-LIM-011). */
  truncated?: boolean;
  [vendor: `x-${string}`]: unknown;
} | {
  role: "assistant";
  content: string;
  /** The run that produced this text (ASP-HIS-009). */
  run_id?: RunId;
  /** Since 1.1: true when the server shortened this entry (its content keeps its beginning) to fit max_event_bytes (ASP-LIM-011). */
  truncated?: boolean;
  [vendor: `x-${string}`]: unknown;
} | {
  role: "tool";
  /** Since 1.1: the run that made this call (ASP-HIS-009). */
  run_id?: RunId;
  tool_call_id: ToolCallId;
  name: ToolName;
  arguments: Record<string, unknown>;
  content: unknown;
  is_error: boolean;
  /** Since 1.1: true when the server shortened this entry (arguments become {}, content a string prefix) to fit max_event_bytes (ASP-LIM-011). */
  truncated?: boolean;
  [vendor: `x-${string}`]: unknown;
};

export type ErrorCode = "invalid_json" | "unsupported_frame" | "invalid_message" | "unknown_type" | "run_in_progress" | "no_active_run" | "rate_limited" | "conversation_not_found" | "resume_failed" | "model_error" | "internal_error" | "shutting_down" | `x-${string}`;

/** The run ended; nothing more of it follows. */
export interface CompleteEvent {
  type: "complete";
  seq: Seq;
  run_id: RunId;
  finish_reason: "stop" | "cancelled" | "error" | "length";
  usage?: Usage;
  [vendor: `x-${string}`]: unknown;
}

/** Something went wrong. With run_id it belongs to that run (which then completes with finish_reason error); without, to the session. */
export interface ErrorEvent {
  type: "error";
  seq: Seq;
  code: ErrorCode;
  message: string;
  retryable: boolean;
  retry_after_ms?: number;
  run_id?: RunId;
  message_id?: MessageId;
  [vendor: `x-${string}`]: unknown;
}

/** The stored conversation so far, oldest first; sent right after session when the conversation is not empty. */
export interface HistoryEvent {
  type: "history";
  seq: Seq;
  conversation_id: ConversationId;
  messages: Array<HistoryEntry>;
  /** Since 1.1: true when earlier entries were left out to fit max_event_bytes; omitted says how many (ASP-LIM-011). */
  truncated?: boolean;
  /** Since 1.1: how many earlier entries were left out (ASP-LIM-011). */
  omitted?: number;
  [vendor: `x-${string}`]: unknown;
}

/** Answer to a client ping. */
export interface PongEvent {
  type: "pong";
  seq: Seq;
  id?: MessageId;
  [vendor: `x-${string}`]: unknown;
}

/** New reasoning text of the running run. */
export interface ReasoningDeltaEvent {
  type: "reasoning_delta";
  seq: Seq;
  run_id: RunId;
  delta: Delta;
  [vendor: `x-${string}`]: unknown;
}

/** Answer to a successful resume: from the next event on, the connection carries the named earlier session, starting at seq replay_from. */
export interface ResumedEvent {
  type: "resumed";
  seq: Seq;
  session_id: SessionId;
  replay_from: Seq;
  replay_count: number;
  [vendor: `x-${string}`]: unknown;
}

/** A run, the agent's answer to one client message, begins. */
export interface RunStartedEvent {
  type: "run_started";
  seq: Seq;
  run_id: RunId;
  message_id: MessageId;
  conversation_id: ConversationId;
  [vendor: `x-${string}`]: unknown;
}

/** First event of every session: who the server thinks the user is, the limits it enforces and the optional features it implements. */
export interface SessionEvent {
  type: "session";
  seq: Seq;
  /** ASP version spoken, MAJOR.MINOR; MAJOR is 1 for this spec. */
  protocol_version: string;
  session_id: SessionId;
  conversation_id: ConversationId;
  user: {
    id: string;
    name?: string;
    [vendor: `x-${string}`]: unknown;
  };
  limits: {
    max_message_bytes: number;
    heartbeat_interval_ms: number;
    idle_timeout_ms: number;
    rate_limit: {
      messages: number;
      window_ms: number;
      [vendor: `x-${string}`]: unknown;
    };
    /** How many recent events of a session the server keeps for resume. */
    replay_window: number;
    /** How long a session stays resumable after its connection ends. */
    session_ttl_ms?: number;
    max_connections?: number;
    /** Since 1.1: no server event's UTF-8 JSON is larger (ASP-LIM-011). */
    max_event_bytes?: number;
    [vendor: `x-${string}`]: unknown;
  };
  capabilities: Array<Capability>;
  server?: {
    name?: string;
    version?: string;
    [vendor: `x-${string}`]: unknown;
  };
  [vendor: `x-${string}`]: unknown;
}

/** New assistant text of the running run. */
export interface TextDeltaEvent {
  type: "text_delta";
  seq: Seq;
  run_id: RunId;
  delta: Delta;
  [vendor: `x-${string}`]: unknown;
}

/** The agent calls a tool with complete arguments. */
export interface ToolCallEvent {
  type: "tool_call";
  seq: Seq;
  run_id: RunId;
  tool_call_id: ToolCallId;
  name: ToolName;
  arguments: Record<string, unknown>;
  /** Since 1.1: true when the server shortened this tool_call (arguments become {}) to fit max_event_bytes (ASP-LIM-011). */
  truncated?: boolean;
  [vendor: `x-${string}`]: unknown;
}

/** A fragment of a tool call's JSON arguments, before its tool_call. */
export interface ToolCallDeltaEvent {
  type: "tool_call_delta";
  seq: Seq;
  run_id: RunId;
  tool_call_id: ToolCallId;
  name?: ToolName;
  delta: Delta;
  [vendor: `x-${string}`]: unknown;
}

/** The one result of an earlier tool_call. */
export interface ToolResultEvent {
  type: "tool_result";
  seq: Seq;
  run_id: RunId;
  tool_call_id: ToolCallId;
  /** The tool's return value, any JSON value. */
  content: unknown;
  is_error: boolean;
  /** Since 1.1: true when the server shortened this tool_result (content becomes a string prefix) to fit max_event_bytes (ASP-LIM-011). */
  truncated?: boolean;
  [vendor: `x-${string}`]: unknown;
}

/** Stop the running run (the named one, or the current one). */
export interface CancelMessage {
  type: "cancel";
  id?: MessageId;
  run_id?: RunId;
  [vendor: `x-${string}`]: unknown;
}

/** A user message; starts a run. */
export interface MessageMessage {
  type: "message";
  id?: MessageId;
  content: string;
  conversation_id?: ConversationId;
  [vendor: `x-${string}`]: unknown;
}

/** Application-level heartbeat; answered by pong. */
export interface PingMessage {
  type: "ping";
  id?: MessageId;
  [vendor: `x-${string}`]: unknown;
}

/** Continue an earlier session of the same user from the event after last_seq. */
export interface ResumeMessage {
  type: "resume";
  id?: MessageId;
  session_id: SessionId;
  last_seq: number;
  [vendor: `x-${string}`]: unknown;
}

/** Any server event; `x-` types are vendor events (ASP-EXT-001). */
export type ServerEvent =
  | CompleteEvent
  | ErrorEvent
  | HistoryEvent
  | PongEvent
  | ReasoningDeltaEvent
  | ResumedEvent
  | RunStartedEvent
  | SessionEvent
  | TextDeltaEvent
  | ToolCallEvent
  | ToolCallDeltaEvent
  | ToolResultEvent;

/** Any client message. */
export type ClientMessage =
  | CancelMessage
  | MessageMessage
  | PingMessage
  | ResumeMessage;
