// Types of asp-client.js. Message shapes come from asp-messages.d.ts, generated from spec/schema.
import type { ClientMessage, ServerEvent, SessionEvent } from "./asp-messages";

export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface BackoffOptions {
  /** First delay ceiling, ms (default 500). */
  baseMs?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
  /** Largest delay ceiling, ms (default 30000). */
  capMs?: number;
  /** A connection that lived this long resets the attempt count, ms (default 10000). */
  resetAfterMs?: number;
}

export interface AspClientOptions {
  url: string;
  token: string;
  conversationId?: string | null;
  /** Resume the previous session after a reconnect (default true). */
  resume?: boolean;
  backoff?: BackoffOptions;
  WebSocketImpl?: typeof WebSocket;
  random?: () => number;
}

export interface StateChange {
  state: ConnectionState;
  code?: number;
  reason?: string;
  delayMs?: number;
  session?: SessionEvent;
}

export interface CloseInfo {
  code: number;
  reason: string;
  willReconnect: boolean;
  delayMs?: number;
  onDemand?: boolean;
}

type EventOf<T extends ServerEvent["type"]> = Extract<ServerEvent, { type: T }>;

export class AspClient {
  constructor(options: AspClientOptions);
  readonly state: ConnectionState;
  readonly session: SessionEvent | null;
  readonly lastSeq: number;
  readonly activeRun: string | null;
  readonly conversationId: string | null;
  readonly queued: number;
  on<T extends ServerEvent["type"]>(type: T, handler: (event: EventOf<T>) => void): () => void;
  on(type: "*", handler: (event: ServerEvent) => void): () => void;
  on(type: "state", handler: (change: StateChange) => void): () => void;
  on(type: "close", handler: (info: CloseInfo) => void): () => void;
  /** After a reconnect: whether the previous session was resumed (a failure is not an error event). */
  on(type: "resume", handler: (outcome: { ok: boolean; event: ServerEvent }) => void): () => void;
  events(): AsyncIterableIterator<ServerEvent>;
  connect(): void;
  close(): void;
  send(message: ClientMessage): string | undefined;
  sendMessage(content: string): string;
  cancel(runId?: string | null): string | undefined;
}
