// camserver dashboard: a camera's recordings on its page: a day's timeline of segments and
// motion events; hover to see the recorded frame (frame.jpeg?t=), click to play from there
// (replay.mjpeg, at a chosen speed), export a clip as MP4, the day's events with snapshots.
"use strict";

const timeline = document.getElementById("timeline");
const playDay = document.getElementById("play-day");
const playSpeed = document.getElementById("play-speed");
const playState = document.getElementById("play-state");
const player = document.getElementById("player");
const preview = document.getElementById("preview");
const eventList = document.getElementById("event-list");
const clipState = document.getElementById("clip-state");
let dayStart = 0; // epoch seconds of the chosen day's local midnight
let viewStart = 0, viewSpan = 86400; // the part of the day the timeline shows
let lastEnd = 0; // the end of the day's last recording
const playSpan = document.getElementById("play-span");
let hoverTimer = null;

// An <img> cannot send a header: the token goes in the URL, as for VLC.
const withToken = (url) => token ? `${url}${url.includes("?") ? "&" : "?"}token=${enc(token)}` : url;
const pad = (n) => String(n).padStart(2, "0");
const hms = (t) => { const d = new Date(t * 1000); return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`; };

function localDay(date) {
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

async function loadDay() {
  const name = pageStream;
  if (!name) return;
  const [y, m, d] = (playDay.value || localDay(new Date())).split("-").map(Number);
  dayStart = new Date(y, m - 1, d).getTime() / 1000;
  const range = `start=${dayStart}&end=${dayStart + 86400}`;
  const [recs, events] = await Promise.all([
    api("GET", `/api/streams/${enc(name)}/recordings?${range}`),
    api("GET", `/api/events?stream=${enc(name)}&${range}&limit=1000`),
  ]);
  if (name !== pageStream) return;
  const segments = recs.ok ? recs.data.filter((r) => r.kind !== "timelapse") : [];
  lastEnd = segments.length ? Math.max(...segments.map((r) => r.end)) : dayStart + 86400;
  // A span shorter than the day ends at the last recording: what was just recorded.
  viewSpan = Number(playSpan.value);
  viewStart = viewSpan >= 86400 ? dayStart : Math.max(dayStart, lastEnd - viewSpan);
  const spans = [];
  const place = (el, start, end) => {
    const a = Math.max(0, start - viewStart), b = Math.min(viewSpan, end - viewStart);
    el.style.left = `${(100 * a) / viewSpan}%`;
    el.style.width = `max(2px, ${(100 * Math.max(0, b - a)) / viewSpan}%)`;
    return el;
  };
  for (const r of segments) {
    spans.push(place(Object.assign(document.createElement("span"), { className: `seg ${r.kind}` }), r.start, r.end));
  }
  const evs = events.ok ? events.data : [];
  for (const e of evs) {
    spans.push(place(Object.assign(document.createElement("span"), { className: "ev", title: `Motion at ${hms(e.start)}` }), e.start, e.end ?? Date.now() / 1000));
  }
  timeline.replaceChildren(...spans);
  timeline.dataset.segments = segments.length;
  timeline.dataset.start = viewStart;
  timeline.dataset.span = viewSpan;
  const marks = document.querySelectorAll(".hours span");
  marks.forEach((el, i) => { el.textContent = hms(viewStart + (viewSpan * i) / (marks.length - 1)); });
  playState.textContent = segments.length
    ? `${segments.length} recording${segments.length === 1 ? "" : "s"}, ${evs.length} motion event${evs.length === 1 ? "" : "s"}. Hover to see, click to play.`
    : "Nothing recorded that day.";
  eventList.replaceChildren(...evs.map((e) => {
    const li = document.createElement("li");
    const img = Object.assign(document.createElement("img"), { alt: `Motion at ${hms(e.start)}`, loading: "lazy" });
    if (e.snapshot_url) img.src = withToken(e.snapshot_url);
    const btn = Object.assign(document.createElement("button"), { type: "button", textContent: `Play ${hms(e.start)}` });
    btn.setAttribute("aria-label", `Play the motion event at ${hms(e.start)}`);
    btn.addEventListener("click", () => play(e.start - 5));
    li.append(img, btn, ` ${e.peak_area} %`);
    return li;
  }));
}

function timeAt(clientX) {
  const box = timeline.getBoundingClientRect();
  return viewStart + (viewSpan * Math.min(1, Math.max(0, (clientX - box.left) / box.width)));
}

function show(t) {
  // The recorded frame at t (scrubbing): at most one request every 100 ms.
  timeline.setAttribute("aria-valuenow", String(Math.round(t - viewStart)));
  timeline.setAttribute("aria-valuetext", hms(t));
  if (hoverTimer) return;
  hoverTimer = setTimeout(() => { hoverTimer = null; }, 100);
  player.hidden = false;
  preview.src = withToken(`/api/streams/${enc(pageStream)}/frame.jpeg?t=${t.toFixed(3)}`);
  preview.dataset.t = t.toFixed(3);
  playState.textContent = `Recorded at ${hms(t)}`;
}

function play(t) {
  player.hidden = false;
  const speed = playSpeed.value;
  preview.src = withToken(`/api/streams/${enc(pageStream)}/replay.mjpeg?start=${t.toFixed(3)}&speed=${speed}`);
  preview.dataset.t = t.toFixed(3);
  playState.textContent = `Playing from ${hms(t)} at ${speed}x`;
  document.getElementById("clip-from").value = hms(t);
  document.getElementById("clip-to").value = hms(t + 30);
}

timeline.addEventListener("mousemove", (e) => show(timeAt(e.clientX)));
timeline.addEventListener("click", (e) => play(timeAt(e.clientX)));
timeline.addEventListener("keydown", (e) => {
  const now = Number(timeline.getAttribute("aria-valuenow"));
  const step = { ArrowLeft: -10, ArrowRight: 10, PageDown: -600, PageUp: 600 }[e.key];
  if (step) { e.preventDefault(); hoverTimer = null; show(viewStart + Math.min(viewSpan, Math.max(0, now + step))); }
  if (e.key === "Enter") play(viewStart + now);
});
playDay.addEventListener("change", loadDay);
playSpan.addEventListener("change", loadDay);

document.getElementById("clip-export").addEventListener("click", async () => {
  const secs = (v) => { const [h, m, s] = v.split(":").map(Number); return dayStart + h * 3600 + m * 60 + (s || 0); };
  const from = document.getElementById("clip-from").value, to = document.getElementById("clip-to").value;
  if (!from || !to) { clipState.textContent = "Choose where the clip starts and ends."; return; }
  const started = Date.now();
  const ticker = setInterval(() => { clipState.textContent = `Making the clip… ${Math.round((Date.now() - started) / 1000)} s`; }, 500);
  clipState.textContent = "Making the clip…";
  const url = `/api/streams/${enc(pageStream)}/clip.mp4?start=${secs(from)}&end=${secs(to)}`;
  try {
    const resp = await fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
    if (!resp.ok) { clipState.textContent = `No clip: ${(await resp.json()).detail}`; return; }
    const blob = await resp.blob();
    const a = Object.assign(document.createElement("a"), { href: URL.createObjectURL(blob), download: `${pageStream}-${from.replace(/:/g, "")}.mp4` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
    clipState.textContent = `Clip ready (${(blob.size / 1e6).toFixed(1)} MB).`;
  } finally {
    clearInterval(ticker);
  }
});

function openPlayback() {
  playDay.value = localDay(new Date());
  player.hidden = true;
  preview.removeAttribute("src");
  loadDay();
}
