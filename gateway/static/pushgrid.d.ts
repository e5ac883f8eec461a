// Type declarations of pushgrid.js, the client of pushgrid's native
// WebSocket protocol (PROTOCOL.md). Served by every node at /pushgrid.d.ts.

/** The first frame of every connection (PROTOCOL.md §1). */
export interface Welcome {
  type: "welcome";
  /** The connection's id, unique in the cluster. */
  conn: string;
  /** The node the client is connected to. */
  node: string;
  user: string;
}

/** Any frame the server sends: a JSON object with a string type. */
export interface Frame {
  type: string;
  channel?: string;
  user?: string;
  msg?: unknown;
  /** On history channels: strictly increasing along the channel (PROTOCOL.md §6). */
  seq?: number;
  [key: string]: unknown;
}

/** The answer to a join. */
export interface Joined extends Frame {
  type: "joined";
  channel: string;
  /** Present on history channels: the channel's last seq. */
  seq?: number;
  /** After a join with since: whether every message after it was still retained. */
  recovered?: boolean;
}

export interface Left extends Frame {
  type: "left";
  channel: string;
}

/** The answer to a presence question (PROTOCOL.md §7). */
export interface Presence extends Frame {
  type: "presence";
  channel: string;
  count: number;
  users: { user: string; conns: number }[];
  truncated?: boolean;
}

/**
 * An Error with a protocol error code: one of PROTOCOL.md §1's (bad_channel,
 * forbidden, no_handler, timeout, unavailable, ...), or the client's own:
 * "timeout" (no connection or no answer in time), "disconnected" (the
 * connection closed before a custom request's answer), "closed" (the
 * client is closed).
 */
export interface PushgridError extends Error {
  code: string;
  /** The error frame, when the server sent one. */
  frame?: Frame;
  /** A failed rejoin's channel. */
  channel?: string;
}

export interface Disconnected {
  code: number;
  reason: string;
  /** false when the client stops: close(), 4002 or another code a backend chose, 4003 with no getToken. */
  reconnect: boolean;
}

/**
 * A WebSocket constructor: the browser's, Node 22's global one, or the ws
 * package's. The client uses send, close, onmessage and onclose.
 */
export type WebSocketConstructor = new (url: string, ...rest: any[]) => any;

export interface ConnectOptions {
  /**
   * The gateways' /ws URLs (ws:// or wss://), or their http(s):// base URLs
   * (/ws is added), tried in random order. Default in a browser: the
   * page's own host, /ws.
   */
  urls?: string | string[];
  /** The user, sent as ?user= (auth.mode none). */
  user?: string;
  /** A token, sent as ?token= (auth.mode jwt or hook). */
  token?: string;
  /**
   * Gets a token before each connection and before the current token's
   * exp (the refresh is sent as a refresh frame). Without it a token that
   * expires ends the client (close 4003).
   */
  getToken?: () => string | Promise<string>;
  /** The WebSocket constructor; default globalThis.WebSocket (Node.js < 22 has none: pass the ws package's). */
  WebSocket?: WebSocketConstructor;
  /** How long a request waits for a connection, and a socket for its welcome, in ms (10000). */
  timeout?: number;
  /** Reconnect backoff: the first delay's bound in ms (250); each failed attempt doubles it, with full jitter. */
  backoffBase?: number;
  /** The longest reconnect delay in ms (10000). */
  backoffCap?: number;
  /** ms of silence from the server before a ping (20000); twice that and the connection is given up. 0: no pings. */
  pingInterval?: number;
}

export interface JoinOptions {
  /** History channels: replay everything after this seq (PROTOCOL.md §6). */
  since?: number;
  /** History channels: replay the last this many messages first. */
  history?: number;
}

export interface EventMap {
  /** Each time a connection is up (after every reconnect), with its welcome. */
  connected: Welcome;
  /** Each time a connection that was up ends. */
  disconnected: Disconnected;
  /** An error frame no request was waiting for, a failed rejoin, a getToken that threw. */
  error: PushgridError;
  /** A rejoin with since answered recovered:false: messages may be lost; reload the channel's state. */
  recovery_failed: { channel: string };
  /** Anything received that is not for a joined channel or an answer: user, conn and broadcast payloads. */
  message: Frame | unknown;
}

export interface Client {
  /** The last connection's welcome; null before the first. */
  readonly welcome: Welcome | null;
  readonly connected: boolean;
  /** Adds a listener; returns the function that removes it. */
  on<E extends keyof EventMap>(event: E, fn: (arg: EventMap[E]) => void): () => void;
  /**
   * Joins channel (now, or once connected) and calls onMessage with each of
   * its frames: chats, control frames, backend payloads that carry this
   * channel, replays. Rejoined after every reconnect (with since on history
   * channels). Rejects with a PushgridError on an error frame.
   */
  join(channel: string, onMessage: (frame: Frame) => void, options?: JoinOptions): Promise<Joined>;
  /** Leaves channel; no more rejoins. */
  leave(channel: string): Promise<Left>;
  /** Sends a chat (queued while disconnected, up to timeout). */
  chat(channel: string, msg: unknown): void;
  /** Sends the custom frame {type, ...body} with no id: published to backends, no answer. */
  send(type: string, body?: Record<string, unknown>): void;
  /** Sends {type, ...body, id}; resolves with the backend's reply (the reply frame's msg). */
  request(type: string, body?: Record<string, unknown>): Promise<unknown>;
  /** Who is in channel, cluster-wide. */
  presence(channel: string): Promise<Presence>;
  /** Closes the connection and stops reconnecting, for good. */
  close(): void;
}

/** Returns a client at once; it connects in the background and reconnects until close(). */
export function connect(options?: ConnectOptions): Client;
