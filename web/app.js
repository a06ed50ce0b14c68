// camserver dashboard: live tiles over Socket.IO, managed through the REST API.
"use strict";

const grid = document.getElementById("grid");
const empty = document.getElementById("empty");
const banner = document.getElementById("banner");
const summary = document.getElementById("summary");
const template = document.getElementById("tile-template");
const tiles = new Map(); // name -> tile state
let pageStream = null; // the camera whose page is open (camera.js), watched while it is

// -- token (only when the server asks for one) --------------------------------------------

const TOKEN_KEY = "camserver.token";
let token = localStorage.getItem(TOKEN_KEY) || "";
const loginDialog = document.getElementById("login");
const signOut = document.getElementById("sign-out");
signOut.hidden = !token;

function askToken(message) {
  document.getElementById("err-login").textContent = message || "";
  if (!loginDialog.open) loginDialog.showModal();
}

document.getElementById("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  token = document.getElementById("login-token").value.trim();
  if (!token) return;
  localStorage.setItem(TOKEN_KEY, token);
  signOut.hidden = false;
  loginDialog.close();
  socket.auth = { token };
  socket.io.opts.query = { token };
  socket.disconnect().connect();
  refresh();
  loadFound();
});

signOut.addEventListener("click", () => {
  localStorage.removeItem(TOKEN_KEY);
  location.reload();
});

// The token goes in the CONNECT packet (auth), Socket.IO's own way, and in the handshake
// (query) too, so that the session is never one that must still prove itself.
const socket = io({
  transports: ["websocket", "polling"],
  auth: { token },
  query: token ? { token } : {},
});

async function api(method, path, body) {
  // X-Requested-With: camserver serves a POST only with a header a page on another site
  // cannot send (see src/camserver/api/browser.py).
  const init = { method, headers: { "X-Requested-With": "camserver" } };
  if (token) init.headers["Authorization"] = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (resp.status === 401) askToken(token ? "That token was refused." : "");
  let data = null;
  const type = resp.headers.get("content-type") || "";
  if (type.includes("application/json")) data = await resp.json();
  return { ok: resp.ok, status: resp.status, data, resp };
}

// A GET whose answer replaces what the page shows: socket events and timers start them
// while one may still be out, and on a busy server two can finish out of order. The older
// answer then arrives last and would undo the newer one (a camera just announced vanishes
// from the list): an answer older than one already used comes back as stale.
function latestOnly(path) {
  let issued = 0;
  let used = 0;
  return async () => {
    const mine = ++issued;
    const answer = await api("GET", path).catch(() => ({ ok: false }));
    if (mine < used) return { ok: false, stale: true };
    used = mine;
    return answer;
  };
}

// -- tiles ------------------------------------------------------------------------------

function describe(status) {
  const parts = [];
  if (status.state === "streaming") parts.push(`${status.fps.toFixed(1)} fps`);
  parts.push(`${status.viewers} viewer${status.viewers === 1 ? "" : "s"}`);
  if (status.node) parts.push(`node ${status.node}`);
  return parts.join(" · ");
}

function why(status) {
  // An unreachable camera says why, and when the next attempt is.
  if (status.state === "streaming" || !status.last_error || !["retrying", "connecting"].includes(status.state)) return "";
  const error = status.last_error.replace(/; retrying in [\d.]+ s$/, "");
  const left = status.retry_at ? Math.max(0, Math.round(status.retry_at - Date.now() / 1000)) : null;
  return left === null ? error : `${error} — next attempt in ${left} s`;
}

function renderStatus(tile) {
  const { stream, el } = tile;
  const s = stream.status;
  const badge = el.querySelector(".badge");
  badge.textContent = s.state;
  badge.dataset.state = s.state;
  badge.title = s.last_error ? `Last error: ${s.last_error}` : "";
  el.querySelector(".stats").textContent = describe(s);
  const reason = el.querySelector(".why");
  reason.textContent = why(s);
  reason.hidden = !reason.textContent;
  const toggle = el.querySelector('[data-act="toggle"]');
  toggle.textContent = stream.enabled ? "Stop" : "Start";
  toggle.setAttribute("aria-label", `${stream.enabled ? "Stop" : "Start"} ${stream.name}`);
}

function createTile(stream) {
  const el = template.content.firstElementChild.cloneNode(true);
  el.dataset.name = stream.name;
  const link = Object.assign(document.createElement("a"), {
    href: `#/streams/${encodeURIComponent(stream.name)}`, textContent: stream.name,
  });
  link.setAttribute("aria-label", `Open camera ${stream.name}`);
  el.querySelector(".name").append(link);
  const img = el.querySelector(".picture");
  img.alt = `Live picture from camera ${stream.name}`;
  for (const btn of el.querySelectorAll("button")) {
    const label = btn.textContent || btn.dataset.act;
    btn.setAttribute("aria-label", `${label} ${stream.name}`);
    btn.addEventListener("click", () => onAction(stream.name, btn.dataset.act));
  }
  const tile = { stream, el, img, url: null, visible: false, joined: false };
  tiles.set(stream.name, tile);
  observer.observe(el);
  el.draggable = true;
  el.tabIndex = -1;
  el.addEventListener("dragstart", (e) => { e.dataTransfer.setData("text/plain", stream.name); el.classList.add("dragging"); });
  el.addEventListener("dragend", () => el.classList.remove("dragging"));
  el.addEventListener("dragover", (e) => e.preventDefault());
  el.addEventListener("drop", (e) => {
    e.preventDefault();
    const moved = e.dataTransfer.getData("text/plain");
    if (moved && moved !== stream.name) placeBefore(moved, stream.name);
  });
  grid.appendChild(el);
  renderStatus(tile);
  arrange();
  return tile;
}

function removeTile(name) {
  const tile = tiles.get(name);
  if (!tile) return;
  observer.unobserve(tile.el);
  if (tile.url) URL.revokeObjectURL(tile.url);
  tile.el.remove();
  tiles.delete(name);
  if (tile.joined) socket.emit("leave_stream", { name });
}

// -- layout, order and hidden cameras (remembered in this browser) ---------------------------

const LAYOUT_KEY = "camserver.layout";
const ORDER_KEY = "camserver.order";
const HIDDEN_KEY = "camserver.hidden";
const layoutSelect = document.getElementById("layout");
const showHidden = document.getElementById("show-hidden");
const stored = (key, fallback) => { try { return JSON.parse(localStorage.getItem(key)) ?? fallback; } catch { return fallback; } };
let order = stored(ORDER_KEY, []);
let hidden = new Set(stored(HIDDEN_KEY, []));

function setLayout(value) {
  layoutSelect.value = value;
  grid.dataset.columns = value;
  localStorage.setItem(LAYOUT_KEY, JSON.stringify(value));
}
setLayout(stored(LAYOUT_KEY, "auto"));
layoutSelect.addEventListener("change", () => setLayout(layoutSelect.value));

function arrange() {
  // Known cameras in the remembered order, new ones after them in the server's order.
  const names = [...tiles.keys()];
  const rank = (n) => { const i = order.indexOf(n); return i < 0 ? order.length + names.indexOf(n) : i; };
  for (const name of names.sort((a, b) => rank(a) - rank(b))) {
    const tile = tiles.get(name);
    tile.el.hidden = hidden.has(name);
    grid.appendChild(tile.el);
  }
  const n = names.filter((x) => hidden.has(x)).length;
  showHidden.hidden = n === 0;
  showHidden.textContent = `Show ${n} hidden camera${n === 1 ? "" : "s"}`;
}

function saveOrder() {
  order = [...grid.children].map((el) => el.dataset.name);
  localStorage.setItem(ORDER_KEY, JSON.stringify(order));
}

function placeBefore(moved, target) {
  const a = tiles.get(moved), b = tiles.get(target);
  if (!a || !b) return;
  grid.insertBefore(a.el, b.el);
  saveOrder();
}

function move(name, step) {
  const el = tiles.get(name)?.el;
  const sibling = step < 0 ? el?.previousElementSibling : el?.nextElementSibling;
  if (!sibling) return;
  if (step < 0) grid.insertBefore(el, sibling); else grid.insertBefore(sibling, el);
  saveOrder();
  el.querySelector("a").focus();
}

function setHidden(name, hide) {
  if (hide) hidden.add(name); else hidden.delete(name);
  localStorage.setItem(HIDDEN_KEY, JSON.stringify([...hidden]));
  arrange();
  syncRooms();
}

showHidden.addEventListener("click", () => { hidden = new Set(); localStorage.setItem(HIDDEN_KEY, "[]"); arrange(); });

document.addEventListener("keydown", (e) => {
  const typing = e.target.closest && e.target.closest("input, select, textarea, dialog");
  if (typing || e.ctrlKey || e.metaKey || pageStream) return;
  if (!e.altKey && /^[0-4]$/.test(e.key)) { setLayout(e.key === "0" ? "auto" : e.key); return; }
  const tileEl = e.target.closest && e.target.closest(".tile");
  if (e.altKey && tileEl && (e.key === "ArrowLeft" || e.key === "ArrowRight")) {
    e.preventDefault();
    move(tileEl.dataset.name, e.key === "ArrowLeft" ? -1 : 1);
  }
});

let loaded = false;

function updateSummary() {
  empty.hidden = tiles.size > 0;
  empty.textContent = loaded ? "No cameras yet. Add one below." : "Loading cameras…";
  const live = [...tiles.values()].filter((t) => t.stream.status.state === "streaming").length;
  summary.textContent = `${tiles.size} camera${tiles.size === 1 ? "" : "s"}, ${live} streaming`;
}

const getStreams = latestOnly("/api/streams");

async function refresh() {
  const { ok, data } = await getStreams();
  if (!ok) return;
  loaded = true;
  const seen = new Set();
  for (const stream of data) {
    seen.add(stream.name);
    const tile = tiles.get(stream.name);
    if (tile) {
      tile.stream = stream;
      renderStatus(tile);
    } else {
      createTile(stream);
    }
  }
  for (const name of [...tiles.keys()]) if (!seen.has(name)) removeTile(name);
  updateSummary();
  syncRooms();
}

// -- rooms: a tile watches its stream only while visible ----------------------------------

const observer = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const tile = tiles.get(entry.target.dataset.name);
    if (tile) tile.visible = entry.isIntersecting;
  }
  syncRooms();
});

function syncRooms() {
  const active = socket.connected && document.visibilityState === "visible";
  for (const [name, tile] of tiles) {
    const want = active && ((tile.visible && !hidden.has(name)) || name === pageStream);
    if (want && !tile.joined) {
      tile.joined = true;
      // ack: the server holds frames back while we are behind (see frame_ack below).
      socket.emit("join_stream", { name, ack: true }, (ack) => {
        if (!ack || !ack.ok) tile.joined = false;
      });
    } else if (!want && tile.joined && socket.connected) {
      tile.joined = false;
      socket.emit("leave_stream", { name });
    }
  }
}

document.addEventListener("visibilitychange", syncRooms);

socket.on("connect", () => {
  banner.hidden = true;
  for (const tile of tiles.values()) tile.joined = false; // the server forgot our rooms
  refresh();
  loadFound();
});
socket.on("disconnect", () => {
  banner.hidden = false;
  for (const tile of tiles.values()) tile.joined = false;
});
socket.on("connect_error", (err) => {
  if (err && /token/.test(err.message)) { askToken(token ? "That token was refused." : ""); return; }
  banner.hidden = false;
});

// Flow control: tell the server, five times a second, the newest frame of each stream this
// page got. A page that falls behind (a slow phone, many tiles) would otherwise have seconds
// of frames queued in socket buffers and show them late; the server holds frames back while
// one it sent goes unacknowledged for half a second.
let unacked = {};
let ackTimer = null;
function ackFrame(name, seq) {
  unacked[name] = seq;
  ackTimer ??= setTimeout(() => {
    ackTimer = null;
    if (socket.connected) socket.emit("frame_ack", unacked);
    unacked = {};
  }, 200);
}

socket.on("frame", (msg) => {
  ackFrame(msg.name, msg.seq);
  if (msg.name === pageStream) pageFrame(msg);
  const tile = tiles.get(msg.name);
  if (!tile || !tile.joined || !tile.visible) return;
  const url = URL.createObjectURL(new Blob([msg.data], { type: "image/jpeg" }));
  const old = tile.url;
  tile.url = url;
  tile.img.src = url;
  if (old) URL.revokeObjectURL(old); // keep memory flat: one object URL per tile
  tile.el.dataset.seq = msg.seq;
});

socket.on("motion", (msg) => {
  const tile = tiles.get(msg.name);
  if (!tile) return;
  const on = msg.state === "start";
  tile.el.dataset.motion = on ? "on" : "off";
  tile.el.querySelector(".motion").hidden = !on;
});

socket.on("stream_status", (msg) => {
  const tile = tiles.get(msg.name);
  if (!tile) { refresh(); return; }
  tile.stream.status = msg.status;
  renderStatus(tile);
  updateSummary();
});

setInterval(() => {
  if (document.visibilityState !== "visible") return;
  refresh();
  if (clusterMode) loadCluster();
}, 3000);

// -- cluster mode: the nodes and their health ------------------------------------------------

const clusterPanel = document.getElementById("cluster");
let clusterMode = false; // /healthz names the node in cluster mode (and /api/cluster is 404 else)
async function loadCluster() {
  const { ok, data } = await api("GET", "/api/cluster").catch(() => ({ ok: false }));
  clusterPanel.hidden = !ok;
  if (!ok) return;
  const now = Date.now() / 1000;
  const rows = data.nodes.map((n) => {
    const tr = document.createElement("tr");
    const beat = n.last_heartbeat ? `${Math.max(0, now - n.last_heartbeat).toFixed(1)} s ago` : "—";
    const cells = [n.id + (n.id === data.node ? " (this page's)" : ""), n.address || "—",
      n.cameras.join(", ") || "none", String(n.viewers), beat, n.pulls ? "yes" : "serves only"];
    tr.append(...cells.map((text) => Object.assign(document.createElement("td"), { textContent: text })));
    tr.dataset.node = n.id;
    return tr;
  });
  document.getElementById("cluster-nodes").replaceChildren(...rows);
  document.getElementById("cluster-redis").textContent = data.redis.reachable
    ? `Redis ${data.redis.url} reachable` : `Redis ${data.redis.url} NOT reachable: ${data.redis.last_error || "?"}`;
}

// -- actions ------------------------------------------------------------------------------

async function onAction(name, act) {
  const tile = tiles.get(name);
  if (!tile) return;
  if (act === "full") {
    tile.el.classList.toggle("full");
    if (tile.el.classList.contains("full") && tile.el.requestFullscreen) {
      tile.el.requestFullscreen().catch(() => {});
    } else if (document.fullscreenElement) {
      document.exitFullscreen().catch(() => {});
    }
  } else if (act === "snapshot") {
    const resp = await fetch(`/api/streams/${encodeURIComponent(name)}/snapshot`, {
      headers: token ? { Authorization: `Bearer ${token}` } : {},
    });
    if (!resp.ok) { alert(`No snapshot: ${(await resp.json()).detail}`); return; }
    const url = URL.createObjectURL(await resp.blob());
    const a = Object.assign(document.createElement("a"), {
      href: url, download: `${name}-${new Date().toISOString().replace(/[:.]/g, "-")}.jpg`,
    });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  } else if (act === "toggle") {
    const verb = tile.stream.enabled ? "stop" : "start";
    const { ok, data } = await api("POST", `/api/streams/${encodeURIComponent(name)}/${verb}`);
    if (ok) await refresh(); else if (data) alert(data.detail);
  } else if (act === "hide") {
    setHidden(name, true);
  } else if (act === "remove") {
    if (!confirm(`Remove camera "${name}"?`)) return;
    const { ok, data } = await api("DELETE", `/api/streams/${encodeURIComponent(name)}`);
    if (ok) { removeTile(name); updateSummary(); } else if (data) alert(data.detail);
  }
}

document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") for (const t of tiles.values()) t.el.classList.remove("full");
});

// -- discovery ----------------------------------------------------------------------------

const foundList = document.getElementById("found");
const foundEmpty = document.getElementById("found-empty");
const scanState = document.getElementById("scan-state");
// "ip:port" -> discovered camera. Not by name: any host can announce any name, and two
// cameras giving the same name are both shown, flagged.
const found = new Map();
const where = (cam) => `${cam.ip}:${cam.port}`;

const keyDrafts = new Map(); // discovered encrypted ESPHome device → the key typed so far

function renderFound() {
  foundList.replaceChildren();
  for (const cam of [...found.values()].sort((a, b) => a.first_seen - b.first_seen)) {
    const li = document.createElement("li");
    li.dataset.name = cam.name;
    const what = document.createElement("span");
    what.className = "what";
    const model = cam.model ? ` · ${cam.model}` : "";
    const esphome = cam.kind === "esphome" ? ` · ESPHome${cam.encrypted ? " (encrypted)" : ""}` : "";
    what.textContent = `${cam.name} — ${cam.ip}:${cam.port}${model}${esphome}`;
    if (cam.conflict) {
      const warn = document.createElement("strong");
      warn.className = "conflict";
      warn.textContent = " · another camera gives this name: check the address";
      what.append(warn);
    }
    const btn = document.createElement("button");
    btn.type = "button";
    const taken = cam.stream || tiles.has(cam.name);
    btn.textContent = taken ? "Added" : "Add";
    btn.disabled = Boolean(taken);
    btn.setAttribute("aria-label", `Add discovered camera ${cam.name}`);
    // An encrypted ESPHome device is added with its key (camserver cannot ask it without).
    // (What was typed survives the list being drawn again: a discovery event, a refresh.)
    let keyInput = null;
    if (cam.kind === "esphome" && cam.encrypted && !taken) {
      keyInput = document.createElement("input");
      keyInput.type = "password";
      keyInput.placeholder = "encryption key";
      keyInput.setAttribute("aria-label", `Encryption key of ${cam.name}`);
      keyInput.value = keyDrafts.get(where(cam)) || "";
      keyInput.addEventListener("input", () => keyDrafts.set(where(cam), keyInput.value));
    }
    btn.addEventListener("click", async () => {
      btn.disabled = true;
      const body = keyInput && keyInput.value.trim() ? { encryption_key: keyInput.value.trim() } : undefined;
      const { ok, data } = await api("POST", `/api/discovery/${encodeURIComponent(cam.name)}/add`, body);
      if (!ok) {
        btn.disabled = false;
        scanState.textContent = (data && data.detail) || "Could not add the camera";
        return;
      }
      cam.stream = cam.name;
      await refresh();
      renderFound();
    });
    li.append(...[what, keyInput, btn].filter(Boolean));
    foundList.appendChild(li);
  }
  foundEmpty.hidden = found.size > 0;
}

const getFound = latestOnly("/api/discovery");

async function loadFound() {
  const { ok, status, data } = await getFound();
  if (ok) {
    found.clear();
    for (const cam of data) found.set(where(cam), cam);
    renderFound();
  } else if (status === 503) {
    // A load balancer's own 503 (no node up for a moment) has no JSON body.
    scanState.textContent = (data && data.detail) || "Discovery is not available right now";
  }
}

socket.on("camera_discovered", () => loadFound());
// A stream added, changed or removed (here, in another tab, or on another cluster node).
socket.on("stream_changed", () => refresh());

document.getElementById("scan").addEventListener("click", async (e) => {
  const btn = e.currentTarget;
  btn.disabled = true;
  scanState.textContent = "Scanning…";
  const { ok, data } = await api("POST", "/api/discovery/scan?timeout=2");
  btn.disabled = false;
  if (!ok) { scanState.textContent = (data && data.detail) || "Scan failed"; return; }
  for (const cam of data) found.set(where(cam), cam);
  scanState.textContent = `${data.length} camera${data.length === 1 ? "" : "s"} answered`;
  renderFound();
});

// -- add form -----------------------------------------------------------------------------

const form = document.getElementById("add-form");
const fieldFor = {
  name: "name", host: "source", stream_url: "source", snapshot_url: "source", port: "source",
  encryption_key: "key",
};

function showErrors(errors) {
  for (const id of ["name", "source", "key", "form"]) {
    document.getElementById(`err-${id}`).textContent = "";
  }
  for (const input of form.querySelectorAll("input")) input.removeAttribute("aria-invalid");
  for (const err of errors) {
    const target = fieldFor[err.field] || "form";
    const span = document.getElementById(`err-${target}`);
    span.textContent = span.textContent ? `${span.textContent}; ${err.message}` : err.message;
    const input = document.getElementById(`add-${target}`);
    if (input) input.setAttribute("aria-invalid", "true");
  }
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = form.elements.name.value.trim();
  const source = form.elements.source.value.trim();
  const body = { name };
  if (form.elements.push.checked) body.source = "push";
  else if (form.elements.esphome.checked) Object.assign(body, esphomeTarget(source));
  else if (source.includes("://")) body.stream_url = source; else body.host = source;
  const { ok, status, data } = await api("POST", "/api/streams", body);
  if (ok) {
    showErrors([]);
    form.reset();
    showPushCreated(data);
    await refresh();
    return;
  }
  if (status === 422 && data && data.errors) showErrors(data.errors);
  else showErrors([{ field: null, message: (data && data.detail) || `HTTP ${status}` }]);
});

// A push camera's key and URLs, shown once (never again by any GET).
function showPushCreated(stream) {
  const box = document.getElementById("push-created");
  box.hidden = !stream.push;
  if (!stream.push) return;
  document.getElementById("push-created-name").textContent = stream.name;
  const p = stream.push;
  definitions(document.getElementById("push-created-list"), [
    ["Key", p.key], ["WebSocket", p.ws_url], ["One picture (POST)", p.frame_url], ["Multipart (POST)", p.mjpeg_url],
  ]);
}

// Fill a <dl> with [term, value] rows.
function definitions(dl, rows) {
  dl.replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = String(v);
    dd.dataset.key = k;
    return [dt, dd];
  }));
}

// An ESPHome camera: "porch.local", "192.168.1.60" or "host:6053", and its key if any.
function esphomeTarget(source) {
  const body = { source: "esphome", host: source };
  const m = source.match(/^(.*[^:]):(\d+)$/);
  if (m && !m[1].includes(":")) Object.assign(body, { host: m[1], port: Number(m[2]) });
  const key = form.elements.encryption_key.value.trim();
  if (key) body.encryption_key = key;
  return body;
}

function kindChanged(e) {
  const push = form.elements.push, esphome = form.elements.esphome;
  if (e && e.target === push && push.checked) esphome.checked = false;
  if (e && e.target === esphome && esphome.checked) push.checked = false;
  form.elements.source.disabled = push.checked;
  document.getElementById("add-key-field").hidden = !esphome.checked;
}
form.elements.push.addEventListener("change", kindChanged);
form.elements.esphome.addEventListener("change", kindChanged);
form.addEventListener("reset", () => setTimeout(kindChanged));

updateSummary();
refresh();
loadFound();
api("GET", "/healthz").then(({ data }) => {
  clusterMode = Boolean(data && data.node);
  if (clusterMode) loadCluster();
}).catch(() => {});
