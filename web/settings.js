// camserver dashboard: a camera's motion detection (with a zone editor drawn over the live
// picture) and recording settings, on its page. Each change is saved at once (PATCH).
"use strict";

const motionForm = document.getElementById("motion-form");
const recForm = document.getElementById("rec-form");
const zonesSvg = document.getElementById("zones");
const zoneList = document.getElementById("zone-list");
const zoneDraw = document.getElementById("zone-draw");
const zoneFinish = document.getElementById("zone-finish");
const zoneKind = document.getElementById("zone-kind");
const SVG = "http://www.w3.org/2000/svg";
let zones = []; // [{kind, points: [[x, y], ...]}], as stored
let drawing = null; // the points of the zone being drawn

let saving = Promise.resolve();

function patch(part, body, stateId, what) {
  // One change at a time, in order; the inputs keep what the person typed meanwhile.
  const name = pageStream;
  saving = saving.then(async () => {
    const state = document.getElementById(stateId);
    state.textContent = `Saving ${what}…`;
    const { ok, status, data } = await api("PATCH", `/api/streams/${enc(name)}`, { [part]: body });
    if (name !== pageStream) return;
    if (ok) {
      state.textContent = `${what[0].toUpperCase()}${what.slice(1)} saved.`;
      zones = data.motion.zones.map((z) => ({ kind: z.kind, points: z.points }));
      if (!drawing) drawZones();
    } else {
      const errors = (status === 422 && data && data.errors) || [{ message: (data && data.detail) || `HTTP ${status}` }];
      state.textContent = `Not saved: ${errors.map((e) => e.message).join("; ")}`;
    }
  }).catch(() => {});
  return saving;
}

function showSettings(stream) {
  const m = stream.motion, r = stream.recording;
  motionForm.elements.enabled.checked = m.enabled;
  motionForm.elements.threshold.value = m.threshold;
  motionForm.elements.min_area.value = m.min_area;
  motionForm.elements.cooldown.value = m.cooldown;
  recForm.elements.mode.value = r.mode;
  recForm.elements.timelapse_interval.value = r.timelapse_interval ?? "";
  recForm.elements.max_age_hours.value = r.max_age_hours ?? "";
  recForm.elements.max_gb.value = r.max_bytes ? +(r.max_bytes / 1e9).toFixed(2) : "";
  zones = m.zones.map((z) => ({ kind: z.kind, points: z.points }));
  if (!drawing) drawZones();
}

motionForm.addEventListener("change", (e) => {
  const el = e.target;
  const value = el.type === "checkbox" ? el.checked : Number(el.value);
  patch("motion", { [el.name]: value }, "motion-state", "motion detection");
});

recForm.addEventListener("change", (e) => {
  const el = e.target;
  let name = el.name, value = el.value === "" ? null : el.value;
  if (name === "max_gb") { name = "max_bytes"; value = value === null ? null : Math.round(Number(value) * 1e9); }
  else if (name !== "mode" && value !== null) value = Number(value);
  patch("recording", { [name]: value }, "rec-state", "recording");
});

// -- zones: polygons in picture coordinates 0..1, drawn over the live view --------------------

function drawZones() {
  const shapes = zones.map((z, i) => {
    const p = document.createElementNS(SVG, "polygon");
    p.setAttribute("points", z.points.map(([x, y]) => `${x},${y}`).join(" "));
    p.setAttribute("class", `zone ${z.kind}`);
    p.dataset.index = i;
    return p;
  });
  if (drawing && drawing.length) {
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", drawing.map(([x, y]) => `${x},${y}`).join(" "));
    line.setAttribute("class", `zone drawing ${zoneKind.value}`);
    shapes.push(line);
  }
  zonesSvg.replaceChildren(...shapes);
  zoneList.replaceChildren(...zones.map((z, i) => {
    const li = document.createElement("li");
    li.textContent = `Zone ${i + 1}: ${z.kind}, ${z.points.length} corners `;
    const del = Object.assign(document.createElement("button"), { type: "button", textContent: "Remove" });
    del.setAttribute("aria-label", `Remove zone ${i + 1}`);
    del.addEventListener("click", () => saveZones(zones.filter((_, j) => j !== i)));
    li.append(del);
    return li;
  }));
}

function saveZones(next) {
  return patch("motion", { zones: next }, "motion-state", "zones");
}

zoneDraw.addEventListener("click", () => {
  drawing = [];
  zonesSvg.classList.add("editing");
  zoneDraw.hidden = true;
  zoneFinish.hidden = false;
  document.getElementById("zone-help").textContent = "Click the zone's corners on the picture, then Finish the zone.";
});

zonesSvg.addEventListener("click", (e) => {
  if (!drawing) return;
  const box = zonesSvg.getBoundingClientRect();
  const at = (v) => Math.round(Math.min(1, Math.max(0, v)) * 1000) / 1000;
  drawing.push([at((e.clientX - box.left) / box.width), at((e.clientY - box.top) / box.height)]);
  drawZones();
});

zoneFinish.addEventListener("click", async () => {
  const points = drawing || [];
  drawing = null;
  zonesSvg.classList.remove("editing");
  zoneDraw.hidden = false;
  zoneFinish.hidden = true;
  document.getElementById("zone-help").textContent = "Draw a zone: click its corners on the picture, then Finish.";
  if (points.length < 3) {
    document.getElementById("motion-state").textContent = "A zone needs at least 3 corners.";
    drawZones();
    return;
  }
  await saveZones([...zones, { kind: zoneKind.value, points }]);
});

document.getElementById("zone-clear").addEventListener("click", () => saveZones([]));

// The picture keeps its aspect ratio inside the 4:3 view (letterboxed for HD, 96x96...): the
// zones are drawn over the picture itself, not over the bars.
let fitted = "";
function fitZones(e) {
  const img = document.getElementById("cam-picture");
  const w = img.naturalWidth, h = img.naturalHeight;
  const key = `${w}x${h}`;
  if (!w || !h || (e && e.type === "load" && key === fitted)) return; // (a load per frame)
  const box = img.parentElement.getBoundingClientRect();
  if (!box.width) return; // (hidden)
  fitted = key;
  const scale = Math.min(box.width / w, box.height / h);
  const dw = w * scale, dh = h * scale;
  Object.assign(zonesSvg.style, {
    left: `${(box.width - dw) / 2}px`, top: `${(box.height - dh) / 2}px`,
    width: `${dw}px`, height: `${dh}px`, inset: "auto",
  });
}
document.getElementById("cam-picture").addEventListener("load", fitZones);
window.addEventListener("resize", fitZones);
