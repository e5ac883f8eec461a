// pushgrid.js: the client of pushgrid's native WebSocket protocol
// (PROTOCOL.md §1, §4, §6) for browsers and Node.js 18 or later. One ES
// module, no dependencies; every node serves it at /pushgrid.js.
//
//   import {connect} from "/pushgrid.js";
//   const c = connect({user: "alice"});              // the page's own host, /ws
//   c.on("connected", (w) => console.log("on node", w.node));
//   await c.join("lobby", (f) => console.log(f), {history: 20});
//   c.chat("lobby", "hello");
//
// Node.js before 22 has no global WebSocket: pass one, such as the ws
// package's: connect({urls: ["ws://127.0.0.1:8000/ws"], WebSocket}).
//
// What survives a reconnect: joined channels (rejoined, history channels
// with since = the last seq seen), requests waiting to be sent, and joins,
// leaves and presence questions sent but not answered (sent again).
// Custom requests sent but not answered are rejected with code
// "disconnected": the backend may have acted on them already.

const BACKOFF_BASE = 250; // ms: the first retry waits up to this (full jitter)
const BACKOFF_CAP = 10000; // ms: no retry waits longer
const TIMEOUT = 10000; // ms: a request's wait for a connection; a socket's for its welcome
const ANSWER_TIMEOUT = 20000; // ms: the server answers every request; past this it never will
const PING_INTERVAL = 20000; // ms of silence before a ping; twice that and the socket is dead
const REFRESH_LEAD = 30000; // ms before exp a token is refreshed (at most a fifth of its life)
const REJOIN_RETRY = 1000; // ms before a rejoin answered unavailable (a store failing over) is retried

// The frames that answer a request; they carry its id back.
const ANSWERS = new Set(["joined", "left", "reply", "refreshed", "presence", "pong", "error"]);

/** An Error with a protocol error code ("forbidden", "timeout", ...). */
function failure(code, msg, frame) {
  const err = new Error(`${code}: ${msg}`);
  err.code = code;
  if (frame) err.frame = frame;
  return err;
}

// exp of a JWT in ms, 0 when token is not one or has none. The signature
// is the server's business; the client only needs to know when to refresh.
function tokenExp(token) {
  try {
    const b64 = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const exp = JSON.parse(atob(b64)).exp;
    return typeof exp === "number" ? exp * 1000 : 0;
  } catch {
    return 0;
  }
}

// wsURL makes a gateway /ws URL of u: ws(s) URLs are kept (a proxy may
// serve /ws elsewhere) unless they have no path; http(s) base URLs get /ws.
function wsURL(u) {
  const url = new URL(u, globalThis.location?.href);
  const http = url.protocol === "http:" || url.protocol === "https:";
  if (http) url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  if (url.protocol !== "ws:" && url.protocol !== "wss:") throw new TypeError(`pushgrid: not a ws, wss, http or https URL: ${u}`);
  if (url.pathname === "/" || (http && !url.pathname.endsWith("/ws"))) url.pathname = url.pathname.replace(/\/?$/, "/ws");
  return url.href;
}

function shuffle(a) {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/**
 * connect returns a client at once and connects in the background; it
 * reconnects until close(). See pushgrid.d.ts for the options and events.
 */
export function connect(options = {}) {
  const {user, getToken} = options;
  const WS = options.WebSocket ?? globalThis.WebSocket;
  if (!WS) throw new TypeError("pushgrid: no WebSocket here; pass connect({WebSocket}) (Node.js < 22: the ws package)");
  let urls = options.urls ?? (globalThis.location ? [`${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`] : []);
  urls = shuffle((typeof urls === "string" ? [urls] : [...urls]).map(wsURL));
  if (!urls.length) throw new TypeError("pushgrid: no urls");
  const base = options.backoffBase ?? BACKOFF_BASE;
  const cap = options.backoffCap ?? BACKOFF_CAP;
  const timeout = options.timeout ?? TIMEOUT;
  const pingInterval = options.pingInterval ?? PING_INTERVAL;

  const listeners = new Map(); // event → Set of functions
  const channels = new Map(); // name → {onMessage, confirmed (a joined came), lastSeq (history channels only)}
  const waiting = []; // items to send once connected, in order: {frame, timer, resolve?, reject?, keep?}
  const pending = new Map(); // id → item sent, its answer awaited
  let sock = null; // the current WebSocket, connected or not
  let connected = false; // sock's welcome came
  let closed = false; // close() or a final close code: no more reconnects
  let attempts = 0; // connection attempts since the last welcome
  let next = 0; // index in urls of the next attempt
  let ids = 0;
  let token = options.token; // the token of the current or next connection
  let lastRecv = 0;
  let retryTimer, welcomeTimer, refreshTimer, pingTimer;

  const client = {
    welcome: null,
    get connected() { return connected; },
    on(event, fn) {
      if (!listeners.has(event)) listeners.set(event, new Set());
      listeners.get(event).add(fn);
      return () => listeners.get(event).delete(fn);
    },
    join(channel, onMessage, opts = {}) {
      const frame = {type: "join", channel};
      if (opts.since !== undefined) frame.since = opts.since;
      if (opts.history !== undefined) frame.history = opts.history;
      let ch = channels.get(channel);
      if (!ch) channels.set(channel, (ch = {confirmed: false, lastSeq: undefined}));
      ch.onMessage = onMessage;
      return ask(frame, {keep: true}).catch((err) => {
        if (!ch.confirmed && channels.get(channel) === ch) channels.delete(channel);
        throw err;
      });
    },
    async leave(channel) {
      channels.delete(channel);
      // A disconnect already left every channel, and the next connection
      // will not rejoin this one.
      if (!connected) return {type: "left", channel};
      return ask({type: "leave", channel});
    },
    chat(channel, msg) { post({type: "chat", channel, msg}); },
    send(type, body = {}) { post({...body, type}); },
    async request(type, body = {}) {
      const f = await ask({type, ...body});
      return f.type === "reply" ? f.msg : f;
    },
    presence(channel) { return ask({type: "presence", channel}, {keep: true}); },
    close() {
      if (closed) return;
      closed = true;
      clearTimeout(retryTimer);
      if (sock) {
        const ws = sock;
        lost(ws, 1000, "closed by the client");
        try { ws.close(1000); } catch { /* closing anyway */ }
      }
      stop();
    },
  };

  function emit(event, arg) {
    for (const fn of [...(listeners.get(event) ?? [])]) deliver(fn, arg);
  }

  // A handler's exception must not break the client's dispatch; it is
  // thrown again on its own, where it is reported like any uncaught error.
  function deliver(fn, arg) {
    try { fn(arg); } catch (err) { setTimeout(() => { throw err; }); }
  }

  // ask sends frame with a fresh id (now, or once connected) and resolves
  // with its answer; keep: sent again after a reconnect if unanswered.
  function ask(frame, {keep = false} = {}) {
    if (closed) return Promise.reject(failure("closed", "the client is closed"));
    return new Promise((resolve, reject) => {
      const item = {frame: {...frame, id: `pg${++ids}`}, resolve, reject, keep};
      connected ? transmit(item) : hold(item);
    });
  }

  function post(frame) {
    if (closed) return;
    const item = {frame};
    connected ? transmit(item) : hold(item);
  }

  function hold(item, front = false) {
    front ? waiting.unshift(item) : waiting.push(item);
    item.timer = setTimeout(() => {
      waiting.splice(waiting.indexOf(item), 1);
      fail(item, failure("timeout", `not connected within ${timeout} ms`));
    }, timeout);
  }

  function transmit(item) {
    clearTimeout(item.timer);
    try { sock.send(JSON.stringify(item.frame)); } catch { /* the close event follows */ }
    const {id} = item.frame;
    if (id === undefined) return;
    pending.set(id, item);
    item.timer = setTimeout(() => {
      pending.delete(id);
      fail(item, failure("timeout", `no answer to ${item.frame.type} within ${ANSWER_TIMEOUT} ms`));
    }, ANSWER_TIMEOUT);
  }

  function fail(item, err) {
    item.reject ? item.reject(err) : emit("error", err);
  }

  async function open() {
    if (closed) return;
    const url = urls[next % urls.length];
    if (getToken) {
      try {
        token = await getToken();
      } catch (err) {
        emit("error", err instanceof Error ? err : new Error(String(err)));
        return retry(1006);
      }
      if (closed) return;
    }
    const u = new URL(url);
    if (user) u.searchParams.set("user", user);
    if (token) u.searchParams.set("token", token);
    let ws;
    try {
      ws = new WS(u.href);
    } catch (err) {
      emit("error", err);
      return retry(1006);
    }
    sock = ws;
    // A socket that neither opens nor fails (a silent network) is given up.
    welcomeTimer = setTimeout(() => drop(ws, "no welcome in time"), timeout);
    ws.onmessage = (e) => ws === sock && receive(ws, e.data);
    ws.onclose = (e) => lost(ws, e.code, e.reason);
    ws.onerror = () => {}; // the close event that follows says what happened
  }

  // drop gives up on ws, which may never send its close event.
  function drop(ws, reason) {
    if (ws !== sock) return;
    lost(ws, 1006, reason);
    try { ws.close(); } catch { /* dead already */ }
  }

  // lost handles the end of ws, from its close event or a drop.
  function lost(ws, code, reason) {
    if (ws !== sock) return;
    ws.onmessage = ws.onclose = null;
    sock = null;
    clearTimeout(welcomeTimer);
    clearTimeout(refreshTimer);
    clearInterval(pingTimer);
    const was = connected;
    connected = false;
    const again = [];
    for (const item of pending.values()) {
      clearTimeout(item.timer);
      if (item.keep) again.push(item);
      else if (item.frame.type === "leave") item.resolve({type: "left", channel: item.frame.channel});
      else fail(item, failure("disconnected", `connection closed (${code}) before the answer`));
    }
    pending.clear();
    for (const item of again.reverse()) hold(item, true);
    const final = closed || (code >= 4000 && code <= 4999 && code !== 4001 && (code !== 4003 || !getToken));
    if (was) emit("disconnected", {code, reason, reconnect: !final});
    if (final) return stop();
    retry(code);
  }

  // retry schedules the next attempt. After 1012 (the server restarting in
  // place) at once and at the same address; else with exponential backoff
  // and full jitter, at the next address; after 1008 (rate limit, stalled
  // frame) with the longest backoff, as coming back at once is what earned it.
  function retry(code) {
    if (closed) return;
    let delay = Math.random() * Math.min(cap, base * 2 ** attempts);
    if (code === 1012) delay = 0;
    else next++;
    if (code === 1008) delay = cap * (0.5 + Math.random() / 2);
    attempts++;
    retryTimer = setTimeout(open, delay);
  }

  // stop ends the client for good: close(), or a close code saying not to
  // come back (4002 and the other codes a backend or the admin chose,
  // 4003 with no getToken for a new token).
  function stop() {
    closed = true;
    clearTimeout(retryTimer);
    for (const item of [...waiting, ...pending.values()]) {
      clearTimeout(item.timer);
      fail(item, failure("closed", "the client is closed"));
    }
    waiting.length = 0;
    pending.clear();
  }

  function receive(ws, data) {
    lastRecv = Date.now();
    let f;
    try { f = JSON.parse(data); } catch { return emit("message", data); }
    if (f === null || typeof f !== "object" || Array.isArray(f)) return emit("message", f);
    if (f.type === "welcome" && !connected) return welcomed(ws, f);
    const item = ANSWERS.has(f.type) && f.id !== undefined ? pending.get(f.id) : undefined;
    if (item) {
      pending.delete(f.id);
      clearTimeout(item.timer);
      if (f.type === "joined") noteJoined(f, item.frame);
      if (f.type === "error") return fail(item, failure(f.code, f.msg, f));
      return item.resolve(f);
    }
    // An answer to a request that timed out already, or to a ping.
    if (ANSWERS.has(f.type) && String(f.id).startsWith("pg")) return;
    if (f.type === "error") return emit("error", failure(f.code, f.msg, f));
    if (f.type === "pong") return;
    const ch = typeof f.channel === "string" ? channels.get(f.channel) : undefined;
    if (!ch || !ch.confirmed) return emit("message", f);
    if (typeof f.seq === "number" && ch.lastSeq !== undefined) {
      if (f.seq <= ch.lastSeq) return; // a duplicate: the server promises none, this makes sure
      ch.lastSeq = f.seq;
    }
    if (ch.onMessage) deliver(ch.onMessage, f);
  }

  // noteJoined learns from a joined frame whether its channel keeps
  // history (it has a seq) and where the client stands in it: after a
  // plain join at the last seq, after since at since, after history at 0
  // (the replay follows). A channel already followed keeps its place.
  function noteJoined(f, req) {
    const ch = channels.get(f.channel);
    if (!ch) return;
    ch.confirmed = true;
    if (typeof f.seq !== "number") ch.lastSeq = undefined;
    else if (ch.lastSeq === undefined) ch.lastSeq = req.since ?? (req.history !== undefined ? 0 : f.seq);
  }

  function welcomed(ws, f) {
    clearTimeout(welcomeTimer);
    connected = true;
    attempts = 0;
    client.welcome = f;
    for (const [name, ch] of channels) if (ch.confirmed) rejoin(ws, name, ch);
    for (const item of waiting.splice(0)) transmit(item);
    scheduleRefresh(tokenExp(token ?? ""));
    if (pingInterval > 0) pingTimer = setInterval(() => ping(ws), pingInterval);
    emit("connected", f);
  }

  function rejoin(ws, name, ch) {
    const frame = {type: "join", channel: name};
    if (ch.lastSeq !== undefined) frame.since = ch.lastSeq;
    ask(frame).then((f) => {
      if (frame.since !== undefined && f.recovered === false) emit("recovery_failed", {channel: name});
    }, (err) => {
      if (err.code === "disconnected" || err.code === "closed") return; // the next connection rejoins
      emit("error", Object.assign(new Error(`rejoin ${name}: ${err.message}`), {code: err.code, channel: name}));
      // unavailable: the channel's store is failing over; it comes back.
      if (err.code === "unavailable" || err.code === "timeout") {
        setTimeout(() => ws === sock && channels.get(name) === ch && rejoin(ws, name, ch), REJOIN_RETRY);
      }
    });
  }

  function ping(ws) {
    const quiet = Date.now() - lastRecv;
    if (quiet >= 2 * pingInterval) drop(ws, "no answer to ping");
    else if (quiet >= pingInterval) post({type: "ping"});
  }

  // scheduleRefresh gets a new token from getToken before exp (ms) and
  // sends it as a refresh; a bad_token answer reconnects with a fresh one.
  // Without getToken the server closes with 4003 at exp, and that is final.
  function scheduleRefresh(exp) {
    clearTimeout(refreshTimer);
    if (!getToken || !exp) return;
    const left = exp - Date.now();
    const at = Math.min(2 ** 31 - 1, Math.max(0, left - Math.min(REFRESH_LEAD, left / 5)));
    const ws = sock;
    refreshTimer = setTimeout(async () => {
      let t;
      try {
        t = await getToken();
      } catch (err) {
        return emit("error", err instanceof Error ? err : new Error(String(err))); // 4003 comes, then a reconnect
      }
      if (ws !== sock) return;
      ask({type: "refresh", token: t}).then((f) => {
        token = t;
        scheduleRefresh(f.exp > 0 ? f.exp * 1000 : tokenExp(t));
      }, (err) => {
        if (err.code === "bad_token") drop(ws, "token refused");
        else if (err.code !== "disconnected" && err.code !== "closed") emit("error", err);
      });
    }, at);
  }

  open();
  return client;
}
