// The admin page: a view of the cluster from this node's admin API
// (GET /api/cluster once a second), the channels (the server API's
// channels, presence and history methods) and two actions (publish,
// disconnect). No framework, nothing fetched but this node's API.

const $ = (id) => document.getElementById(id);
const POLL_MS = 1000;
const CHART_POINTS = 300; // 5 minutes of polls

// api calls the admin API; a 401 shows the login form.
async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (res.status === 401) {
    showLogin();
    throw new Error("not logged in");
  }
  const out = await res.json();
  if (out && out.error) throw new Error(out.error);
  return out;
}

const call = (method, body) => api("POST", "/api/" + method, body);

function showLogin() {
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login-view").hidden = false;
  $("login-error").hidden = new URLSearchParams(location.search).get("login") !== "failed";
  $("token").focus();
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function uptime(s) {
  if (!s) return "";
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}

// The cluster view, and per-node rates from successive polls.
let last = null; // {at, nodes: {name: {received, delivered}}}
const series = { in: [], out: [] };

function rates(view) {
  const at = Date.parse(view.at);
  const now = {};
  const perNode = {};
  let totalIn = 0, totalOut = 0;
  for (const n of view.nodes) {
    if (n.status !== "up") continue;
    now[n.node] = { received: n.received, delivered: n.delivered };
    const prev = last && last.nodes[n.node];
    if (prev && at > last.at && n.received >= prev.received && n.delivered >= prev.delivered) {
      const dt = (at - last.at) / 1000;
      perNode[n.node] = { in: (n.received - prev.received) / dt, out: (n.delivered - prev.delivered) / dt };
      totalIn += perNode[n.node].in;
      totalOut += perNode[n.node].out;
    }
  }
  if (last) {
    series.in.push(totalIn);
    series.out.push(totalOut);
    if (series.in.length > CHART_POINTS) { series.in.shift(); series.out.shift(); }
  }
  last = { at, nodes: now };
  return perNode;
}

function renderNodes(view) {
  const perNode = rates(view);
  $("node-name").textContent = "on node " + view.node;
  const body = $("nodes").tBodies[0];
  body.replaceChildren(...view.nodes.map((n) => {
    const tr = el("tr");
    tr.dataset.node = n.node;
    tr.className = n.status === "up" ? "" : "down";
    const r = perNode[n.node];
    const since = n.status === "up" ? "" : " since " + new Date(n.last_seen).toLocaleTimeString();
    const cells = [
      ["name", n.node], ["status status-" + n.status, n.status + since],
      ["connections", n.status === "up" ? n.connections : ""], ["channels", n.status === "up" ? n.channels : ""],
      ["in", r ? r.in.toFixed(1) : ""], ["out", r ? r.out.toFixed(1) : ""],
      ["routes", n.status === "up" && n.routes >= 0 ? n.routes : ""],
      ["uptime", uptime(n.uptime_s)], ["version", n.version || ""], ["gateway", n.gateway || ""],
    ];
    for (const [cls, text] of cells) tr.appendChild(el("td", String(text), cls));
    return tr;
  }));
  drawChart();
}

function drawChart() {
  const c = $("chart");
  const g = c.getContext("2d");
  const w = c.width, h = c.height;
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...series.in, ...series.out);
  g.fillStyle = "#889";
  g.font = "11px system-ui, sans-serif";
  g.fillText(Math.round(max).toLocaleString() + "/s", 4, 12);
  for (const [data, color] of [[series.in, "#2f6fde"], [series.out, "#e08a1e"]]) {
    g.strokeStyle = color;
    g.lineWidth = 1.5;
    g.beginPath();
    data.forEach((v, i) => {
      const x = w - (data.length - 1 - i) * (w / (CHART_POINTS - 1));
      const y = h - 2 - (v / max) * (h - 18);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }
}

async function poll() {
  try {
    renderNodes(await api("GET", "/api/cluster"));
    $("conn-state").textContent = "";
  } catch (e) {
    if (e.message !== "not logged in") $("conn-state").textContent = "admin API unreachable: " + e.message;
  }
}

// Channels: search, then a channel's presence and last messages.
async function searchChannels(e) {
  e && e.preventDefault();
  const pattern = $("pattern").value.trim();
  try {
    const out = await call("channels", pattern ? { pattern } : {});
    const body = $("channels").tBodies[0];
    body.replaceChildren(...out.channels.map((c) => {
      const tr = el("tr");
      tr.dataset.channel = c.channel;
      tr.append(el("td", c.channel, "channel"), el("td", String(c.members), "members"));
      tr.onclick = () => showChannel(c.channel);
      return tr;
    }));
    $("channels-note").textContent = out.channels.length === 0 ? "No channel matches." :
      out.truncated ? "The first 10,000; narrow the pattern for the rest." : "";
  } catch (err) {
    $("channels-note").textContent = err.message;
  }
}

async function showChannel(name) {
  $("channel-detail").hidden = false;
  $("detail-name").textContent = name;
  $("presence").replaceChildren();
  $("history").replaceChildren();
  try {
    const p = await call("presence", { channel: name });
    $("presence-count").textContent = `${p.count} connection(s)` + (p.truncated ? ", the first 1,000 users:" : "");
    $("presence").replaceChildren(...p.users.map((u) => el("li", `${u.user} (${u.conns})`)));
  } catch (err) {
    $("presence-count").textContent = err.message;
  }
  try {
    const h = await call("history", { channel: name, last: 20 });
    $("history").replaceChildren(...h.messages.map((m) => el("li", `#${m.seq} ${JSON.stringify(m.data)}`)));
  } catch (err) {
    $("history").replaceChildren(el("li", /history/.test(err.message) ? "This channel keeps no history." : err.message, "muted"));
  }
}

// Actions.
async function publish(e) {
  e.preventDefault();
  const channel = $("pub-channel").value.trim();
  const text = $("pub-payload").value;
  let data;
  try { data = JSON.parse(text); } catch { data = text; }
  try {
    const out = await call("publish", { channel, data, id: "admin-" + Date.now() + "-" + Math.random().toString(36).slice(2) });
    $("pub-result").textContent = out.seq ? `Published to ${channel}, stored as #${out.seq}.` : `Published to ${channel}.`;
  } catch (err) {
    $("pub-result").textContent = "Not published: " + err.message;
  }
}

async function disconnect(e) {
  e.preventDefault();
  const user = $("dc-user").value.trim(), conn = $("dc-conn").value.trim(), reason = $("dc-reason").value.trim();
  const who = user ? `every connection of user ${user}` : `connection ${conn}`;
  if (!user && !conn) { $("dc-result").textContent = "Give a user or a connection."; return; }
  if (!confirm(`Disconnect ${who}?`)) return;
  const req = user ? { user } : { conn };
  if (reason) req.reason = reason;
  try {
    const out = await call("disconnect", req);
    $("dc-result").textContent = `Closed ${out.conns} connection(s).`;
  } catch (err) {
    $("dc-result").textContent = "Not done: " + err.message;
  }
}

async function start() {
  let s;
  try {
    s = await api("GET", "/api/session");
  } catch (e) {
    $("conn-state").textContent = "admin API unreachable: " + e.message;
    return;
  }
  if (!s.logged_in) {
    showLogin();
    return;
  }
  $("logout").hidden = !s.locked;
  $("login-view").hidden = true;
  $("app").hidden = false;
  $("channel-search").onsubmit = searchChannels;
  $("publish").onsubmit = publish;
  $("disconnect").onsubmit = disconnect;
  await poll();
  setInterval(poll, POLL_MS);
  searchChannels();
}

start();
