// camserver dashboard: the page of one camera (#/streams/<name>): big live view, live
// stats, the ESP32's own settings as controls, and the stream's own settings.
"use strict";

const camPage = document.getElementById("camera-page");
const homePage = document.getElementById("home");
const camPicture = document.getElementById("cam-picture");
const camStats = document.getElementById("cam-stats");
const settingsForm = document.getElementById("cam-settings");
const settingsWhy = document.getElementById("settings-why");
const settingsState = document.getElementById("settings-state");
const editForm = document.getElementById("edit-form");
let camUrl = null;

// esp32-camera's frame sizes (the numbering of current CameraWebServer builds).
const FRAMESIZES = ["96x96", "QQVGA 160x120", "128x128", "QCIF 176x144", "HQVGA 240x176",
  "240x240", "QVGA 320x240", "320x320", "CIF 400x296", "HVGA 480x320", "VGA 640x480",
  "SVGA 800x600", "XGA 1024x768", "HD 1280x720", "SXGA 1280x1024", "UXGA 1600x1200"];
const CONTROLS = [
  { key: "framesize", label: "Resolution", kind: "select" },
  { key: "quality", label: "JPEG quality (lower is finer)", kind: "range", min: 4, max: 63 },
  { key: "brightness", label: "Brightness", kind: "range", min: -2, max: 2 },
  { key: "contrast", label: "Contrast", kind: "range", min: -2, max: 2 },
  { key: "saturation", label: "Saturation", kind: "range", min: -2, max: 2 },
  { key: "led_intensity", label: "LED", kind: "range", min: 0, max: 255 },
  { key: "hmirror", label: "Mirror", kind: "toggle" },
  { key: "vflip", label: "Flip", kind: "toggle" },
];

const enc = encodeURIComponent;

function route() {
  const m = location.hash.match(/^#\/streams\/([^/]+)$/);
  const name = m ? decodeURIComponent(m[1]) : null;
  if (name === pageStream) return;
  pageStream = name;
  camPage.hidden = !name;
  homePage.hidden = Boolean(name);
  if (camUrl) { URL.revokeObjectURL(camUrl); camUrl = null; }
  camPicture.removeAttribute("src");
  document.getElementById("preview").removeAttribute("src"); // ends a replay
  fitted = ""; // settings.js: fit the zones to the next camera's picture
  syncRooms();
  if (name) openCamera(name);
}

async function openCamera(name) {
  document.getElementById("cam-title").textContent = name;
  document.title = `${name} · camserver`;
  camPicture.alt = `Live picture from camera ${name}`;
  const { ok, status, data } = await api("GET", `/api/streams/${enc(name)}`);
  if (name !== pageStream) return;
  if (!ok) {
    camStats.replaceChildren();
    settingsForm.replaceChildren();
    settingsWhy.hidden = false;
    settingsWhy.textContent = status === 404 ? `There is no camera named "${name}".` : (data && data.detail) || `HTTP ${status}`;
    return;
  }
  showStream(data);
  fillEdit(data);
  loadSettings(name);
  openPlayback(); // playback.js
}

// -- live view and stats --------------------------------------------------------------------

function pageFrame(msg) {
  const url = URL.createObjectURL(new Blob([msg.data], { type: "image/jpeg" }));
  const old = camUrl;
  camUrl = url;
  camPicture.src = url;
  camPage.dataset.seq = msg.seq;
  if (old) URL.revokeObjectURL(old);
}

const bytes = (n) => n < 1e6 ? `${(n / 1e3).toFixed(0)} kB` : n < 1e9 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e9).toFixed(2)} GB`;
const clock = (t) => t ? new Date(t * 1000).toLocaleTimeString() : "—";
// Who needs the camera now (an on-demand camera stays connected while anything does).
function neededBy(d) {
  if (!d) return "—";
  const why = [];
  if (d.viewers) why.push(`${d.viewers} viewer${d.viewers === 1 ? "" : "s"}`);
  if (d.recording) why.push("recording");
  if (d.motion) why.push("motion detection");
  return why.join(", ") || "nothing";
}

function showStatus(s) {
  const badge = document.getElementById("cam-state");
  badge.textContent = s.state;
  badge.dataset.state = s.state;
  const rows = [
    ["State", s.state], ["Frames a second", s.fps.toFixed(1)], ["Frames", s.frames],
    ["Received", bytes(s.bytes)], ["Bad frames", s.bad_frames],
    ["Camera connections", s.upstream_connects], ["Viewers", s.viewers],
    ["Needed by", neededBy(s.demand)],
    ["Last frame", clock(s.last_frame_at)],
    ["Last error", s.last_error ? `${s.last_error}${s.last_error_at ? ` (at ${clock(s.last_error_at)})` : ""}` : "none"],
  ];
  if (s.retry_at) rows.push(["Next attempt", clock(s.retry_at)]);
  if (s.node) rows.push(["Pulled by node", s.node]);
  if (s.pusher) rows.push(["Pushed from", s.pusher]);
  if (s.telemetry) {
    const values = Object.entries(s.telemetry.values).map(([k, v]) => `${k} ${v}`).join(", ");
    rows.push(["Telemetry", `${values} (at ${clock(s.telemetry.at)})`]);
  }
  if (s.device) { // an ESPHome camera, as it describes itself
    const d = s.device;
    const what = [d.friendly_name || d.name, d.model, d.manufacturer].filter(Boolean).join(" · ");
    rows.push(["Device", what]);
    if (d.esphome_version) rows.push(["ESPHome", d.esphome_version]);
    if (d.mac_address) rows.push(["MAC", d.mac_address]);
    rows.push(["API", `${d.address} (${d.encrypted ? "Noise-encrypted" : "plaintext"})`]);
  }
  for (const e of s.entities || []) { // its light and switches: shown, not changed
    rows.push([`${e.name} (${e.kind})`, e.on === null ? "unknown" : e.on ? "on" : "off"]);
  }
  definitions(camStats, rows); // app.js
}

function showStream(stream) {
  pageSource = stream.source;
  showStatus(stream.status);
  showSettings(stream); // settings.js
  showPushing(stream);
  showRtsp(stream.name);
}

// -- RTSP: the camera's rtsp:// URL, to copy into an NVR --------------------------------------

let rtspInfo = null;

async function showRtsp(name) {
  if (rtspInfo === null) {
    const { ok, data } = await api("GET", "/api/rtsp");
    rtspInfo = ok ? data : { enabled: false };
  }
  const panel = document.getElementById("rtsp-panel");
  panel.hidden = !rtspInfo.enabled || name !== pageStream;
  if (panel.hidden) return;
  const host = location.hostname.includes(":") ? `[${location.hostname}]` : location.hostname;
  document.getElementById("rtsp-url").value = `rtsp://${host}:${rtspInfo.port}/${enc(name)}`;
  document.getElementById("rtsp-copied").textContent = "";
}

document.getElementById("rtsp-copy").addEventListener("click", async () => {
  const input = document.getElementById("rtsp-url");
  const said = document.getElementById("rtsp-copied");
  try {
    await navigator.clipboard.writeText(input.value); // (secure contexts only: https, localhost)
    said.textContent = "Copied.";
  } catch {
    input.select(); // elsewhere: selected, for Ctrl+C
    said.textContent = "Selected: press Ctrl+C to copy.";
  }
});

// -- a push camera: where it pushes, a new key -----------------------------------------------

function showPushing(stream) {
  const pushed = stream.source === "push";
  const esphome = stream.source === "esphome";
  document.getElementById("push-panel").hidden = !pushed;
  document.getElementById("edit-panel").hidden = pushed || esphome;
  document.getElementById("esphome-panel").hidden = !esphome;
  if (esphome) fillEsphome(stream);
  document.getElementById("push-new").hidden = true;
  if (!pushed) return;
  const base = `${location.origin}/api/streams/${enc(stream.name)}`;
  definitions(document.getElementById("push-urls"), [
    ["WebSocket", `${base.replace(/^http/, "ws")}/push`], ["One picture (POST)", `${base}/frame`],
    ["Multipart (POST)", `${base}/push.mjpeg`],
    ["Expected every", stream.expect_every ? `${stream.expect_every} s` : "— (streams)"],
  ]);
}

document.getElementById("push-new-key").addEventListener("click", async () => {
  const name = pageStream;
  if (!name || !confirm(`A new key for ${name}? The camera stops until it uses the new one.`)) return;
  const { ok, status, data } = await api("POST", `/api/streams/${enc(name)}/push/key`);
  const out = document.getElementById("push-new");
  out.hidden = false;
  definitions(out, ok ? [["New key (shown only now)", data.key]] : [["Refused", (data && data.detail) || `HTTP ${status}`]]);
});

// -- an ESPHome camera: host, port, a new key --------------------------------------------------

const esphomeForm = document.getElementById("esphome-form");

function fillEsphome(stream) {
  esphomeForm.elements.host.value = stream.host || "";
  esphomeForm.elements.port.value = stream.port || 6053;
  esphomeForm.elements.encryption_key.value = "";
  esphomeForm.elements.encryption_key.placeholder = stream.has_encryption_key ? "unchanged" : "none (plaintext)";
  document.getElementById("err-esphome").textContent = "";
}

esphomeForm.addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = esphomeForm.elements;
  const body = { host: f.host.value.trim(), port: Number(f.port.value) };
  if (f.encryption_key.value.trim()) body.encryption_key = f.encryption_key.value.trim();
  const { ok, status, data } = await api("PATCH", `/api/streams/${enc(pageStream)}`, body);
  const err = document.getElementById("err-esphome");
  if (ok) {
    fillEsphome(data);
    err.textContent = "Saved.";
    return;
  }
  const errors = (status === 422 && data && data.errors) || [{ message: (data && data.detail) || `HTTP ${status}` }];
  err.textContent = errors.map((x) => x.message).join("; ");
});

// -- the camera's own settings ----------------------------------------------------------------

function control(spec, value, name) {
  const id = `set-${spec.key}`;
  const wrap = document.createElement("div");
  wrap.className = spec.kind === "toggle" ? "field check" : "field";
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = spec.label;
  let input;
  if (spec.kind === "select") {
    input = document.createElement("select");
    FRAMESIZES.forEach((text, i) => input.append(new Option(text, String(i))));
    input.value = String(value);
  } else if (spec.kind === "range") {
    input = Object.assign(document.createElement("input"), { type: "range", min: spec.min, max: spec.max, step: 1 });
    input.value = String(value);
  } else {
    input = Object.assign(document.createElement("input"), { type: "checkbox", checked: Boolean(value) });
  }
  input.id = id;
  input.name = spec.key;
  const out = document.createElement("output");
  out.htmlFor = id;
  out.textContent = spec.kind === "range" ? input.value : "";
  input.addEventListener("input", () => { if (spec.kind === "range") out.textContent = input.value; });
  input.addEventListener("change", () => applySetting(name, spec, input));
  if (spec.kind === "toggle") wrap.append(input, label); else wrap.append(label, input, out);
  return wrap;
}

let pageSource = "http";

async function loadSettings(name) {
  settingsState.textContent = "";
  if (pageSource === "esphome") { // (what GET .../settings would answer, without asking)
    settingsForm.replaceChildren();
    settingsWhy.hidden = false;
    settingsWhy.textContent = "Camera settings are not available: an ESPHome camera's resolution, "
      + "quality and frame rates are in its YAML, and ESPHome's API does not expose them.";
    return;
  }
  const { ok, status, data } = await api("GET", `/api/streams/${enc(name)}/settings`);
  if (name !== pageStream) return;
  settingsForm.replaceChildren();
  settingsWhy.hidden = ok;
  if (!ok) {
    // 409: added by URL (not an ESP32 host); 502: the camera did not answer.
    settingsWhy.textContent = `Camera settings are not available: ${(data && data.detail) || `HTTP ${status}`}`;
    return;
  }
  for (const spec of CONTROLS) settingsForm.append(control(spec, data[spec.key] ?? 0, name));
}

async function applySetting(name, spec, input) {
  const value = spec.kind === "toggle" ? (input.checked ? 1 : 0) : Number(input.value);
  // (Not disabled meanwhile: a disabled control loses the keyboard focus.)
  input.setAttribute("aria-busy", "true");
  settingsState.textContent = `Setting ${spec.label.toLowerCase()}…`;
  const { ok, data } = await api("PUT", `/api/streams/${enc(name)}/settings`, { [spec.key]: value });
  input.removeAttribute("aria-busy");
  const result = data && data.results && data.results[spec.key];
  if (ok && data.ok) {
    settingsState.textContent = `${spec.label}: set to ${spec.kind === "select" ? FRAMESIZES[value] : value}.`;
  } else {
    settingsState.textContent = `${spec.label}: ${(result && result.error) || (data && data.detail) || "refused"}`;
  }
}

// -- the stream's settings ------------------------------------------------------------------

function fillEdit(stream) {
  editForm.elements.source.value = stream.host || stream.stream_url;
  editForm.elements.on_demand.checked = stream.on_demand;
  editForm.elements.username.value = stream.username || "";
  editForm.elements.password.value = "";
  editForm.elements.password.placeholder = stream.has_password ? "unchanged" : "none";
  document.getElementById("err-edit-source").textContent = "";
  document.getElementById("err-edit-form").textContent = "";
}

editForm.addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = pageStream;
  const f = editForm.elements;
  const source = f.source.value.trim();
  const body = { on_demand: f.on_demand.checked, username: f.username.value.trim() };
  if (source.includes("://")) body.stream_url = source; else body.host = source;
  if (f.password.value) body.password = f.password.value;
  const { ok, status, data } = await api("PATCH", `/api/streams/${enc(name)}`, body);
  const err = document.getElementById("err-edit-form");
  const errSource = document.getElementById("err-edit-source");
  err.textContent = errSource.textContent = "";
  if (ok) {
    fillEdit(data);
    err.textContent = "Saved.";
    loadSettings(name);
    return;
  }
  const errors = (status === 422 && data && data.errors) || [{ field: null, message: (data && data.detail) || `HTTP ${status}` }];
  for (const x of errors) {
    const span = ["host", "stream_url", "snapshot_url"].includes(x.field) ? errSource : err;
    span.textContent = span.textContent ? `${span.textContent}; ${x.message}` : x.message;
  }
});

// -- wiring -----------------------------------------------------------------------------------

socket.on("stream_status", (msg) => { if (msg.name === pageStream) showStatus(msg.status); });
window.addEventListener("hashchange", route);
setInterval(async () => {
  if (!pageStream || document.visibilityState !== "visible") return;
  const { ok, data } = await api("GET", `/api/streams/${enc(pageStream)}/status`).catch(() => ({ ok: false }));
  if (ok && pageStream) showStatus(data);
}, 2000);
route();
