// End-to-end tests of gateway/static/pushgrid.js against real pushgrid
// nodes: `PUSHGRID_BIN=/path/to/pushgrid node --test testdata/js/`
// (TestPushgridJS in pushgridjs_test.go builds the binary and runs this).

import assert from "node:assert/strict";
import {after, afterEach, before, describe, test} from "node:test";
import {connect as connectClient} from "../../gateway/static/pushgrid.js";
import {api, jwt, natsRespond, next, record, relay, sleep, startNode, stopAll, waitFor, WebSocket} from "./harness.mjs";

// Node.js before 22 has no global WebSocket: the ws package's is injected,
// as a Node program using the client would.
const clients = new Set();
function connect(opts) {
  const c = connectClient({WebSocket, ...opts});
  clients.add(c);
  return c;
}
afterEach(() => {
  for (const c of clients) c.close();
  clients.clear();
});
after(stopAll);

// hist.> keeps history and announces nothing (control frames would be
// stored too and take seqs); short.> keeps 3 messages; closed.> may be
// joined by nobody.
const config = `
[[channels]]
pattern = "hist.>"
history = 100
history_ttl = "1h"
announce = false

[[channels]]
pattern = "short.>"
history = 3
history_ttl = "1h"
announce = false

[[channels]]
pattern = "closed.>"
join = "none"
`;

/** publish sends data to channel through the server API, retrying (same id) through a failover. */
async function publish(node, channel, data, id) {
  return waitFor(() => api(node, "publish", {channel, data, id}), 25000, `publish ${id}`);
}

/** inbox collects a channel's frames; wait(n) resolves once it holds n that ok accepts. */
function inbox(ok = () => true) {
  const frames = [];
  const fn = (f) => frames.push(f);
  fn.frames = frames;
  fn.matching = () => frames.filter(ok);
  fn.wait = (n, ms = 10000) => waitFor(() => fn.matching().length >= n && fn.matching(), ms, `${n} frames (have ${JSON.stringify(frames)})`);
  return fn;
}

/** flowing chats from a on channel until b receives one: routes between nodes propagate interest asynchronously. */
async function flowing(a, bInbox, channel) {
  await waitFor(() => {
    a.chat(channel, "probe");
    return bInbox.frames.some((f) => f.type === "chat" && f.msg === "probe");
  }, 10000, `chats on ${channel} to flow`);
}

describe("pushgrid.js on a three-node cluster", () => {
  let n1, n2, n3;
  before(async () => {
    n1 = await startNode("n1", {config});
    [n2, n3] = await Promise.all([startNode("n2", {config, seeds: [n1.cluster]}), startNode("n3", {config, seeds: [n1.cluster]})]);
    // History streams at three replicas: the kill test's node may hold one.
    await Promise.race([n1, n2, n3].map((n) => n.waitLog((l) => l.msg === "history streams ready" && l.replicas === 3, 30000, "history at 3 replicas")));
  });

  test("connect: welcome, connected, http base URLs", async () => {
    const c = connect({urls: [n1.ws], user: "alice"});
    const w = await next(c, "connected");
    assert.equal(w.type, "welcome");
    assert.equal(w.node, "n1");
    assert.equal(w.user, "alice");
    assert.ok(w.conn);
    assert.deepEqual(c.welcome, w);
    assert.ok(c.connected);
    const d = connect({urls: n2.http, user: "bob"});
    assert.equal((await next(d, "connected")).node, "n2");
    c.close();
    d.close();
    assert.ok(!c.connected);
  });

  test("join, chat and leave between two nodes", async () => {
    const a = connect({urls: [n1.ws], user: "alice"});
    const b = connect({urls: [n2.ws], user: "bob"});
    const fa = inbox();
    const fb = inbox();
    // Joins wait for the connection.
    const ja = await a.join("room.1", fa);
    assert.deepEqual(ja, {type: "joined", channel: "room.1", id: ja.id});
    await b.join("room.1", fb);
    await flowing(a, fb, "room.1");
    a.chat("room.1", {text: "hello"});
    const isHello = (f) => f.type === "chat" && f.msg?.text === "hello";
    await waitFor(() => fb.frames.some(isHello) && fa.frames.some(isHello), 5000, "hello on both");
    assert.deepEqual(fb.frames.find(isHello), {type: "chat", channel: "room.1", user: "alice", msg: {text: "hello"}});
    // bob's own join was announced to alice.
    await waitFor(() => fa.frames.some((f) => f.type === "control" && f.user === "bob" && f.msg === "joined"), 5000, "bob joined");
    const left = await b.leave("room.1");
    assert.equal(left.type, "left");
    assert.equal(left.channel, "room.1");
    await waitFor(() => fa.frames.some((f) => f.type === "control" && f.user === "bob" && f.msg === "left"), 5000, "bob left");
    // After leave, nothing more reaches bob's handler.
    const had = fb.frames.length;
    a.chat("room.1", "after leave");
    await waitFor(() => fa.frames.some((f) => f.msg === "after leave"), 5000, "after leave");
    await sleep(200);
    assert.equal(fb.frames.length, had);
  });

  test("errors: requests reject with the code, others are error events", async () => {
    const c = connect({urls: [n1.ws], user: "carol"});
    const errors = record(c, "error");
    await assert.rejects(c.join("bad channel!", () => {}), (e) => e.code === "bad_channel" && e.frame?.type === "error");
    await assert.rejects(c.join("closed.x", () => {}), {code: "forbidden"});
    await assert.rejects(c.request("nobody_listens", {x: 1}), {code: "no_handler"});
    assert.deepEqual(errors, []); // each was its request's
    c.chat("closed.x", "hi"); // chat has no id: its error is an event
    const e = await next(c, "error");
    assert.equal(e.code, "forbidden");
  });

  test("request: a backend's reply", async () => {
    const backend = await natsRespond(n1.nats, "push.recv.echo", (body, headers) => ({echo: body.text, user: headers["Push-User"]}));
    try {
      const c = connect({urls: [n1.ws], user: "dave"});
      assert.deepEqual(await c.request("echo", {text: "hi"}), {echo: "hi", user: "dave"});
      // Several at once: answers matched by id.
      const got = await Promise.all(["x", "y", "z"].map((text) => c.request("echo", {text})));
      assert.deepEqual(got.map((g) => g.echo), ["x", "y", "z"]);
    } finally {
      backend.close();
    }
  });

  test("presence across nodes", async () => {
    const a = connect({urls: [n1.ws], user: "erin"});
    const b = connect({urls: [n3.ws], user: "frank"});
    await a.join("pres.1", () => {});
    await b.join("pres.1", () => {});
    const p = await waitFor(async () => {
      const p = await a.presence("pres.1");
      return p.count === 2 && p;
    }, 5000, "presence count 2");
    assert.equal(p.type, "presence");
    assert.deepEqual(p.users, [{user: "erin", conns: 1}, {user: "frank", conns: 1}]);
  });

  test("requests wait for a connection, then time out", async () => {
    const c = connect({urls: ["ws://127.0.0.1:1/ws"], timeout: 300});
    const t0 = Date.now();
    await assert.rejects(c.presence("x"), {code: "timeout"});
    assert.ok(Date.now() - t0 >= 250, "rejected before the timeout");
    c.close();
    await assert.rejects(c.join("x", () => {}), {code: "closed"});
  });

  test("close 1012: reconnect at once to the same address, channels rejoined", async () => {
    const r = await relay(n2);
    try {
      // A backoff this long would show: 1012 must not wait for it.
      const c = connect({urls: [r.url], user: "gina", backoffBase: 30000, backoffCap: 30000});
      const b = connect({urls: [n1.ws], user: "hal"});
      const fc = inbox();
      const fb = inbox();
      await next(c, "connected");
      await c.join("room.restart", fc);
      await b.join("room.restart", fb);
      const down = next(c, "disconnected");
      const up = next(c, "connected", undefined, 5000);
      r.kick(1012, "service restart");
      assert.deepEqual(await down, {code: 1012, reason: "service restart", reconnect: true});
      const t0 = Date.now();
      await up;
      assert.ok(Date.now() - t0 < 2000, `reconnected after ${Date.now() - t0} ms`);
      // Rejoined: chats flow again.
      await flowing(b, fc, "room.restart");
    } finally {
      r.close();
    }
  });

  test("4002 (disconnected by a backend) is final", async () => {
    const c = connect({urls: [n1.ws], user: "kicked"});
    const connects = record(c, "connected");
    await next(c, "connected");
    const down = next(c, "disconnected");
    await api(n1, "disconnect", {user: "kicked"});
    assert.deepEqual(await down, {code: 4002, reason: "disconnected", reconnect: false});
    await sleep(600);
    assert.equal(connects.length, 1);
    await assert.rejects(c.join("x", () => {}), {code: "closed"});
  });

  test("join with history: the last messages, then live ones", async () => {
    for (let n = 1; n <= 3; n++) await publish(n1, "hist.h", {type: "news", channel: "hist.h", n}, `h-${n}`);
    const c = connect({urls: [n3.ws], user: "hope"});
    const got = inbox((f) => f.type === "news");
    const j = await c.join("hist.h", got, {history: 2});
    assert.equal(typeof j.seq, "number");
    await publish(n1, "hist.h", {type: "news", channel: "hist.h", n: 4}, "h-4");
    await got.wait(3);
    assert.deepEqual(got.matching().map((f) => f.n), [2, 3, 4]);
    // On a channel without history, history is answered with no replay.
    const plain = await c.join("room.h", () => {}, {history: 20});
    assert.equal(plain.recovered, false);
    assert.equal(plain.seq, undefined);
  });

  test("recovery_failed when since is no longer retained", async () => {
    const r = await relay(n2);
    try {
      const c = connect({urls: [r.url], user: "ivy", backoffBase: 50, backoffCap: 200});
      const got = inbox((f) => f.type === "news");
      const joined = await c.join("short.r", got);
      assert.equal(typeof joined.seq, "number");
      await publish(n1, "short.r", {type: "news", channel: "short.r", n: 1}, "r-1");
      await got.wait(1);
      const failed = next(c, "recovery_failed", undefined, 15000);
      const up = next(c, "connected", undefined, 15000);
      r.refuse(true);
      r.kick(4001, "slow consumer");
      // Five more while ivy is away: message 1 is gone from a history of 3.
      for (let n = 2; n <= 6; n++) await publish(n1, "short.r", {type: "news", channel: "short.r", n}, `r-${n}`);
      r.refuse(false);
      await up;
      assert.deepEqual(await failed, {channel: "short.r"});
      // What is retained is replayed, in order, once.
      await got.wait(4);
      await sleep(300);
      assert.deepEqual(got.matching().map((f) => f.n), [1, 4, 5, 6]);
    } finally {
      r.close();
    }
  });

  // Last: it kills a node.
  test("SIGKILL of the client's node: reconnects elsewhere, no gap, no duplicate", async (t) => {
    const nodes = {n1, n2, n3};
    const c = connect({urls: [n1.ws, n2.ws, n3.ws], user: "jack", backoffBase: 100});
    const events = record(c, "connected", "disconnected", "recovery_failed");
    const got = inbox((f) => f.type === "news");
    const w = await next(c, "connected");
    await c.join("hist.k", got);
    const victim = nodes[w.node];
    const survivor = Object.values(nodes).find((n) => n !== victim);
    const msg = (n) => ({type: "news", channel: "hist.k", n});
    for (let n = 1; n <= 5; n++) await publish(survivor, "hist.k", msg(n), `k-${n}`);
    await got.wait(5);

    const back = next(c, "connected", (x) => x.node !== victim.name, 20000);
    const killed = Date.now();
    await victim.kill("SIGKILL");
    for (let n = 6; n <= 15; n++) await publish(survivor, "hist.k", msg(n), `k-${n}`);
    const w2 = await back;
    t.diagnostic(`killed ${victim.name}; reconnected to ${w2.node} in ${Date.now() - killed} ms`);
    assert.notEqual(w2.node, victim.name);
    for (let n = 16; n <= 20; n++) await publish(survivor, "hist.k", msg(n), `k-${n}`);
    await got.wait(20, 30000);
    await sleep(300); // a duplicate would come now
    const frames = got.matching();
    assert.deepEqual(frames.map((f) => f.n), Array.from({length: 20}, (_, i) => i + 1));
    for (let i = 1; i < frames.length; i++) assert.ok(frames[i].seq > frames[i - 1].seq, "seqs increase");
    assert.deepEqual(events.filter(([e]) => e === "recovery_failed"), []);
    assert.equal(events.filter(([e]) => e === "disconnected").length, 1);
  });
});

describe("pushgrid.js with jwt tokens", () => {
  const secret = "a-test-secret-of-at-least-32-bytes-long";
  let j1;
  before(async () => {
    j1 = await startNode("j1", {args: ["--auth", "jwt", "--auth-secret", secret, "--auth-leeway", "1s"]});
  });
  const token = (sub, ttl) => jwt(secret, {sub, exp: Math.floor(Date.now() / 1000) + ttl});

  test("refresh before exp keeps the connection", async () => {
    let calls = 0;
    // 3 s tokens, 1 s leeway: without a refresh the server closes at exp + 1 s.
    const c = connect({urls: [j1.ws], getToken: async () => (calls++, token("kim", 3))});
    const events = record(c, "disconnected", "error");
    const w = await next(c, "connected");
    assert.equal(w.user, "kim");
    await waitFor(() => calls >= 3, 10000, "two refreshes");
    await sleep(1500); // the first token has expired, leeway included, by now
    assert.deepEqual(events, []);
    assert.ok(c.connected);
    assert.equal(c.welcome.conn, w.conn);
  });

  test("bad_token on refresh: reconnect with a fresh token", async () => {
    let calls = 0;
    // The second token names another user: the refresh is refused.
    const c = connect({urls: [j1.ws], getToken: () => token(++calls === 2 ? "other" : "lee", 2)});
    const w = await next(c, "connected");
    const down = next(c, "disconnected");
    const w2 = await next(c, "connected", undefined, 10000);
    assert.equal((await down).reconnect, true);
    assert.notEqual(w2.conn, w.conn);
    assert.equal(w2.user, "lee");
    assert.ok(calls >= 3);
  });

  test("4003: a new token from getToken, else final", async () => {
    let calls = 0;
    const c = connect({urls: [j1.ws], getToken: () => (calls++, token("max", 3600))});
    const w = await next(c, "connected");
    const again = next(c, "connected");
    await api(j1, "disconnect", {conn: w.conn, code: 4003, reason: "token expired"});
    assert.notEqual((await again).conn, w.conn);
    assert.equal(calls, 2);

    // A fixed token cannot be renewed: 4003 ends the client.
    const d = connect({urls: [j1.ws], token: token("ned", 3600)});
    const wd = await next(d, "connected");
    const down = next(d, "disconnected");
    await api(j1, "disconnect", {conn: wd.conn, code: 4003, reason: "token expired"});
    assert.deepEqual(await down, {code: 4003, reason: "token expired", reconnect: false});
  });
});
