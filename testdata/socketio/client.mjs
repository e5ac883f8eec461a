// Socket.IO driver for the Go tests (sio_harness_test.go): it runs one real
// socket.io-client, pinned in package-lock.json, through a scenario and
// prints everything the client sees as one JSON object per line on stdout,
// so the tests assert on what an unmodified client got.
//
//   node client.mjs '<scenario>'      or the scenario as the first line of stdin
//
// Scenario:
//   {
//     "url": "http://127.0.0.1:8000",  required
//     "options": {...},  given to io(url, options): transports (["polling"],
//                        ["websocket"], or absent for polling then upgrade),
//                        auth ({"token": T}), path, query, extraHeaders,
//                        reconnection (off unless set here), ...
//     "timeout": 10000,  ms a step may wait unless it says otherwise
//     "steps": [...]     run in order
//   }
// Steps (each may carry its own "timeout"):
//   {"do":"connect"}         connect and take the "connect" line, so a later
//                            expect of {"ev":"connect"} waits for a reconnect;
//                            a connect_error fails it unless reconnection is on
//   {"do":"emit","event":E,"args":[...],"ack":L}
//                            emit E with args; with "ack", the answer prints
//                            as an "ack" line labelled L (or "ack_timeout")
//   {"do":"expect","match":P} wait for a printed line matching P that no
//                            earlier expect took (lines printed before the
//                            step count). P matches a line when each key of an
//                            object matches, arrays elementwise with the same
//                            length, anything else by equality, e.g.
//                            {"ev":"event","name":"joined"}, {"ev":"ack","ack":"j1"}
//   {"do":"wait","ms":N}     let N ms pass
//   {"do":"sync","label":L}  print a "sync" line and wait for a line on stdin,
//                            so the test can act at that point
//   {"do":"stop_pongs"}      the current Engine.IO socket answers no more
//                            pings, as a client that went away silently
//   {"do":"stop_reading"}    the current WebSocket's TCP socket reads no
//                            more, as a client too slow for what it is sent
//   {"do":"resume_reading"}  it reads again
//   {"do":"disconnect"}      socket.disconnect()
//
// Output lines, each with "t", ms since the driver started:
//   {"ev":"connect","id":socket id,"sid":Engine.IO sid,"transport":T}
//   {"ev":"connect_error","message":M,"data":the CONNECT_ERROR's data,"description":D}
//   {"ev":"disconnect","reason":R,"description":D}
//   {"ev":"upgrade","transport":"websocket"}  may come before connect
//   {"ev":"reconnect_attempt","attempt":N}   {"ev":"reconnect","attempt":N}
//   {"ev":"event","name":E,"args":[...]}     every event the server emits
//   {"ev":"ack","ack":L,"args":[...]}        {"ev":"ack_timeout","ack":L}
//   {"ev":"sync","label":L}
//   {"ev":"done"}                            every step passed
//   {"ev":"fail","step":I,"reason":R}        step I (from 0; -1: the scenario) failed
// Exit status: 0 when every step passed, 1 when a step failed, 2 for a bad
// scenario. The socket is closed before exiting, so a disconnect line may
// follow "done" or "fail".
// DEBUG=socket.io-client*,engine.io-client* traces the libraries on stderr.

import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const started = Date.now();
const seen = []; // printed lines that no expect step has taken yet
let waiter = null; // the pending expect's check, run on each new line

function print(line) {
  const out = { ev: line.ev, t: Date.now() - started, ...line };
  process.stdout.write(JSON.stringify(out) + "\n");
  seen.push(out);
  if (waiter) waiter();
}

// describe keeps what helps a reader of an error: library errors carry
// circular request objects that JSON cannot print.
function describe(v) {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "object") return v;
  if (v instanceof Error) return v.message;
  if (typeof v.message === "string") return v.message;
  if (v.description !== undefined) return describe(v.description);
  return String(v);
}

// stdin is read only when needed: the scenario may come on argv, and a test
// that never syncs need not keep stdin open.
let input = null;
const stdinLines = [];
let stdinWaiter = null;
let stdinClosed = false;

function stdinLine() {
  if (!input) {
    input = createInterface({ input: process.stdin });
    input.on("line", (l) => {
      stdinLines.push(l);
      if (stdinWaiter) stdinWaiter();
    });
    input.on("close", () => {
      stdinClosed = true;
      if (stdinWaiter) stdinWaiter();
    });
  }
  return new Promise((resolve, reject) => {
    stdinWaiter = () => {
      if (stdinLines.length > 0) {
        stdinWaiter = null;
        resolve(stdinLines.shift());
      } else if (stdinClosed) {
        stdinWaiter = null;
        reject(new Error("stdin closed"));
      }
    };
    stdinWaiter();
  });
}

function matches(pattern, value) {
  if (Array.isArray(pattern)) {
    return Array.isArray(value) && value.length === pattern.length &&
      pattern.every((p, i) => matches(p, value[i]));
  }
  if (pattern !== null && typeof pattern === "object") {
    return value !== null && typeof value === "object" &&
      Object.keys(pattern).every((k) => matches(pattern[k], value[k]));
  }
  return pattern === value;
}

// take resolves with the first untaken line matching pattern and removes it;
// a line matching failOn first rejects.
function take(pattern, ms, failOn) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      waiter = null;
      reject(new Error(`no line matching ${JSON.stringify(pattern)} within ${ms} ms`));
    }, ms);
    waiter = () => {
      for (let i = 0; i < seen.length; i++) {
        if (failOn && matches(failOn, seen[i])) {
          clearTimeout(timer);
          waiter = null;
          reject(new Error(`got ${JSON.stringify(seen[i])}`));
          return;
        }
        if (matches(pattern, seen[i])) {
          clearTimeout(timer);
          waiter = null;
          resolve(seen.splice(i, 1)[0]);
          return;
        }
      }
    };
    waiter();
  });
}

const steps = {
  async connect(s, step, ms) {
    s.connect();
    await take({ ev: "connect" }, ms, s.io.reconnection() ? null : { ev: "connect_error" });
  },
  async emit(s, step, ms) {
    const args = step.args ?? [];
    if (step.ack === undefined) {
      s.emit(step.event, ...args);
      return;
    }
    s.timeout(ms).emit(step.event, ...args, (err, ...answer) => {
      print(err ? { ev: "ack_timeout", ack: step.ack } : { ev: "ack", ack: step.ack, args: answer });
    });
  },
  async expect(s, step, ms) {
    await take(step.match, ms);
  },
  async wait(s, step) {
    await new Promise((resolve) => setTimeout(resolve, step.ms));
  },
  async sync(s, step, ms) {
    print({ ev: "sync", label: step.label });
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no line on stdin within ${ms} ms`)), ms);
    });
    try {
      await Promise.race([stdinLine(), late]);
    } finally {
      clearTimeout(timer);
    }
  },
  async stop_pongs(s) {
    // engine.io-client answers a ping with _sendPacket("pong"); the pinned
    // version is the one this was written against.
    const engine = s.io.engine;
    if (!engine || typeof engine._sendPacket !== "function") {
      throw new Error("no Engine.IO socket with _sendPacket to silence");
    }
    const send = engine._sendPacket.bind(engine);
    engine._sendPacket = (type, ...rest) => {
      if (type !== "pong") send(type, ...rest);
    };
  },
  async stop_reading(s) {
    tcpSocket(s).pause();
  },
  async resume_reading(s) {
    tcpSocket(s).resume();
  },
  async disconnect(s) {
    s.disconnect();
  },
};

// tcpSocket is the net.Socket under the Engine.IO WebSocket transport:
// on Node, engine.io-client's transport holds a "ws" WebSocket, which holds
// the socket (the pinned versions are the ones this was written against).
function tcpSocket(s) {
  const transport = s.io.engine && s.io.engine.transport;
  const sock = transport && transport.ws && transport.ws._socket;
  if (!sock || typeof sock.pause !== "function") {
    throw new Error("no WebSocket transport with a TCP socket to pause");
  }
  return sock;
}

function parseScenario(text) {
  const sc = JSON.parse(text);
  if (typeof sc.url !== "string") throw new Error('"url" must be a string');
  if (!Array.isArray(sc.steps)) throw new Error('"steps" must be a list');
  sc.steps.forEach((step, i) => {
    if (!Object.hasOwn(steps, step.do)) throw new Error(`step ${i}: unknown "do": ${JSON.stringify(step.do)}`);
    if (step.do === "emit" && typeof step.event !== "string") throw new Error(`step ${i}: emit needs "event"`);
    if (step.do === "expect" && (step.match === null || typeof step.match !== "object")) {
      throw new Error(`step ${i}: expect needs a "match" object`);
    }
    if (step.do === "wait" && typeof step.ms !== "number") throw new Error(`step ${i}: wait needs "ms"`);
  });
  return sc;
}

let socket = null;

// finish closes the socket and lets pending writes (a polling client's
// close packet) go out before the process ends; the unref'd timer ends a
// process that something still holds open.
function finish(code) {
  process.exitCode = code;
  if (socket) socket.disconnect();
  if (input) input.close();
  process.stdin.destroy();
  setTimeout(() => process.exit(code), 2000).unref();
}

async function main() {
  let sc;
  try {
    sc = parseScenario(process.argv[2] ?? (await stdinLine()));
  } catch (err) {
    print({ ev: "fail", step: -1, reason: `bad scenario: ${err.message}` });
    return finish(2);
  }
  socket = io(sc.url, { reconnection: false, ...sc.options, autoConnect: false });
  socket.on("connect", () => {
    const engine = socket.io.engine;
    print({ ev: "connect", id: socket.id, sid: engine.id, transport: engine.transport.name });
  });
  socket.on("connect_error", (err) => {
    print({ ev: "connect_error", message: err.message, data: err.data, description: describe(err.description) });
  });
  socket.on("disconnect", (reason, details) => {
    print({ ev: "disconnect", reason, description: describe(details) });
  });
  socket.onAny((name, ...args) => print({ ev: "event", name, args }));
  socket.io.on("open", () => {
    socket.io.engine.on("upgrade", (transport) => print({ ev: "upgrade", transport: transport.name }));
  });
  socket.io.on("reconnect_attempt", (attempt) => print({ ev: "reconnect_attempt", attempt }));
  socket.io.on("reconnect", (attempt) => print({ ev: "reconnect", attempt }));

  for (const [i, step] of sc.steps.entries()) {
    try {
      await steps[step.do](socket, step, step.timeout ?? sc.timeout ?? 10000);
    } catch (err) {
      print({ ev: "fail", step: i, reason: err.message });
      return finish(1);
    }
  }
  print({ ev: "done" });
  finish(0);
}

main();
