// Harness of pushgrid.test.mjs: real pushgrid nodes spawned from
// $PUSHGRID_BIN on ephemeral loopback ports, a WebSocket relay that can
// close its clients with any code or refuse them, a NATS responder
// speaking the text protocol, HS256 tokens, and bounded waits.

import {spawn} from "node:child_process";
import {createHmac} from "node:crypto";
import {mkdtempSync, rmSync, writeFileSync} from "node:fs";
import net from "node:net";
import {tmpdir} from "node:os";
import {join} from "node:path";
import {createInterface} from "node:readline";
import {WebSocket, WebSocketServer} from "ws";

export {WebSocket};

const procs = new Set();
const dirs = new Set();
process.on("exit", () => {
  for (const p of procs) p.kill("SIGKILL");
  for (const d of dirs) rmSync(d, {recursive: true, force: true});
});

/** stopAll kills every node started so far. */
export async function stopAll() {
  await Promise.all([...procs].map((n) => n.kill("SIGKILL")));
}

/**
 * startNode runs `pushgrid serve` with config (TOML text) and args, and
 * resolves once its "started" log line named its addresses.
 */
export async function startNode(name, {config = "", seeds = [], args = []} = {}) {
  const bin = process.env.PUSHGRID_BIN;
  if (!bin) throw new Error("PUSHGRID_BIN is not set: the path of a pushgrid binary (go build -o /tmp/pushgrid .)");
  const dir = mkdtempSync(join(tmpdir(), `pushgrid-js-${name}-`));
  dirs.add(dir);
  writeFileSync(join(dir, "pushgrid.toml"), config);
  const argv = ["serve", "--node", name, "--config", join(dir, "pushgrid.toml"), "--listen", "127.0.0.1:0",
    "--nats-listen", "127.0.0.1:0", "--cluster-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
    "--workers", "1", "--history-dir", join(dir, "data"), "--log-format", "json", "--drain", "100ms"];
  for (const s of seeds) argv.push("--seed", s);
  const proc = spawn(bin, [...argv, ...args], {stdio: ["ignore", "ignore", "pipe"]});
  const node = {name, proc, lines: [], watchers: new Set()};
  node.exited = new Promise((resolve) => proc.on("exit", (code, signal) => { procs.delete(node); resolve({code, signal}); }));
  node.kill = (signal = "SIGKILL") => { proc.kill(signal); return node.exited; };
  // waitLog resolves with the first log line (parsed) that ok accepts.
  node.waitLog = (ok, ms = 20000, what = "a log line") => {
    const seen = node.lines.find(ok);
    if (seen) return Promise.resolve(seen);
    return bounded(new Promise((resolve) => node.watchers.add((l) => ok(l) && resolve(l))), ms, `${name}: ${what}`);
  };
  procs.add(node);
  createInterface({input: proc.stderr}).on("line", (text) => {
    let l;
    try { l = JSON.parse(text); } catch { l = {msg: text}; }
    node.lines.push(l);
    if (l.level === "ERROR" || process.env.PUSHGRID_JS_LOGS) process.stderr.write(`${name}: ${text}\n`);
    for (const w of node.watchers) w(l);
  });
  const started = await Promise.race([
    node.waitLog((l) => l.msg === "pushgrid started", 20000, "started"),
    node.exited.then(({code}) => { throw new Error(`${name} exited (${code}) before it started:\n${node.lines.map((l) => JSON.stringify(l)).join("\n")}`); }),
  ]);
  node.ws = `ws://${started.gateway}/ws`;
  node.http = `http://${started.gateway}`;
  node.admin = `http://${started.admin}`;
  node.cluster = started.cluster;
  node.nats = started.nats;
  return node;
}

/** api calls the server API method on node's admin listener (POST /api/<method>). */
export async function api(node, method, body = {}) {
  const res = await fetch(`${node.admin}/api/${method}`, {method: "POST", body: JSON.stringify(body),
    headers: {"Content-Type": "application/json"}, signal: AbortSignal.timeout(15000)});
  const out = await res.json();
  if (!res.ok || out.error) throw new Error(`api ${method} on ${node.name}: ${res.status} ${JSON.stringify(out)}`);
  return out;
}

/** bounded rejects with what after ms unless p settles first. */
export function bounded(p, ms, what) {
  let timer;
  const late = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms); });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** waitFor polls cond (maybe async) until it returns a truthy value, which it resolves with. */
export async function waitFor(cond, ms, what) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}${last ? `: ${last.message}` : ""}`);
    await sleep(50);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** next resolves with the next event of client that ok (when given) accepts. */
export function next(client, event, ok = () => true, ms = 10000) {
  let off;
  return bounded(new Promise((resolve) => { off = client.on(event, (v) => ok(v) && resolve(v)); }), ms, `event ${event}`)
    .finally(() => off());
}

/** record collects every event of the kinds given, in order, as [kind, arg]. */
export function record(client, ...events) {
  const got = [];
  for (const e of events) client.on(e, (v) => got.push([e, v]));
  return got;
}

/** jwt signs an HS256 token with payload. */
export function jwt(secret, payload) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const head = `${b64({alg: "HS256", typ: "JWT"})}.${b64(payload)}`;
  return `${head}.${createHmac("sha256", secret).update(head).digest("base64url")}`;
}

/**
 * relay is a WebSocket relay to node's /ws, so that a test can end its
 * clients' connections with a close code of its choice (kick) and turn
 * new ones away (refuse) while the node itself stays up.
 */
export async function relay(node) {
  const target = new URL(node.ws);
  let refusing = false;
  const pairs = new Set();
  const wss = new WebSocketServer({host: "127.0.0.1", port: 0, verifyClient: () => !refusing});
  await new Promise((resolve) => wss.once("listening", resolve));
  wss.on("connection", (down, req) => {
    const up = new WebSocket(`ws://${target.host}${req.url}`);
    const early = [];
    const pair = {down, up};
    pairs.add(pair);
    up.on("open", () => { for (const m of early.splice(0)) up.send(m); });
    up.on("message", (m, binary) => down.readyState === WebSocket.OPEN && down.send(m, {binary}));
    down.on("message", (m, binary) => (up.readyState === WebSocket.OPEN ? up.send(m, {binary}) : early.push(m)));
    const end = () => { pairs.delete(pair); up.terminate(); down.terminate(); };
    up.on("close", (code, reason) => (code >= 3000 || code === 1000 || code === 1001 ? down.close(code, reason) : end()));
    down.on("close", end);
    up.on("error", end);
    down.on("error", end);
  });
  return {
    url: `ws://127.0.0.1:${wss.address().port}/ws`,
    get connections() { return pairs.size; },
    refuse(on) { refusing = on; },
    kick(code, reason) { for (const {down, up} of pairs) { down.close(code, reason); up.close(); } pairs.clear(); },
    close() { for (const {down, up} of pairs) { down.terminate(); up.terminate(); } wss.close(); },
  };
}

/**
 * natsRespond answers every request on subject at the node's NATS client
 * port with answer(body, headers): enough of the NATS text protocol for a
 * backend, so that the tests need no NATS package.
 */
export async function natsRespond(natsURL, subject, answer) {
  const {hostname, port} = new URL(natsURL);
  const sock = net.connect(Number(port), hostname);
  let buf = Buffer.alloc(0);
  let ready;
  const subscribed = new Promise((resolve, reject) => {
    ready = resolve;
    sock.once("error", reject);
  });
  sock.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      const nl = buf.indexOf("\r\n");
      if (nl < 0) return;
      const line = buf.subarray(0, nl).toString();
      const [op, ...args] = line.split(" ");
      if (op === "MSG" || op === "HMSG") {
        // MSG subject sid [reply] size; HMSG subject sid [reply] header-size total-size
        const total = Number(args.at(-1));
        if (buf.length < nl + 2 + total + 2) return;
        const body = buf.subarray(nl + 2, nl + 2 + total);
        buf = buf.subarray(nl + 4 + total);
        const hsize = op === "HMSG" ? Number(args.at(-2)) : 0;
        const reply = args.length === (op === "HMSG" ? 5 : 4) ? args[2] : undefined;
        const headers = Object.fromEntries(body.subarray(0, hsize).toString().split("\r\n").slice(1)
          .filter((h) => h.includes(":")).map((h) => [h.slice(0, h.indexOf(":")), h.slice(h.indexOf(":") + 1).trim()]));
        if (reply) {
          const out = Buffer.from(JSON.stringify(answer(JSON.parse(body.subarray(hsize).toString()), headers)));
          sock.write(Buffer.concat([Buffer.from(`PUB ${reply} ${out.length}\r\n`), out, Buffer.from("\r\n")]));
        }
        continue;
      }
      buf = buf.subarray(nl + 2);
      if (op === "INFO") sock.write(`CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\nSUB ${subject} 1\r\nPING\r\n`);
      else if (op === "PING") sock.write("PONG\r\n");
      else if (op === "PONG") ready(); // the server has the SUB: it handles a connection's lines in order
      else if (op === "-ERR") sock.destroy(new Error(`nats: ${line}`));
    }
  });
  await bounded(subscribed, 5000, `subscribe ${subject}`);
  return {close: () => sock.destroy()};
}
