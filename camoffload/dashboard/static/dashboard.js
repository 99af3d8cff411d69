// The camoffload dashboard page: one server-sent event stream, the whole state first
// and then patches; no framework, uPlot for the charts. Everything here is bounded:
// chart points to the last CHART_SECONDS, the feed to FEED_ROWS rows.
"use strict";

const CHART_SECONDS = 300;
const FEED_ROWS = 100;
const STALE_SECONDS = 10; // no status for this long: the edge or worker looks gone
const LATENCY_SAMPLES = 2000;

// Read by tests and the bench: how late each status reached this page, in seconds
// from the moment its publisher stamped it to the moment it was on screen.
window.camoffload = { latencies: [], patches: 0, fulls: 0, controlsSent: 0 };

const edges = new Map(); // id -> {el, data, charts, series}
const workers = new Map(); // id -> {el, data}

function fmt(value, digits = 1, unit = "") {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return `${Number(value).toFixed(digits)}${unit}`;
}

function bytesPerSecond(value) {
  if (value === null || value === undefined) return "–";
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)} MB/s`;
  return `${(value / 1e3).toFixed(1)} kB/s`;
}

function clock(ts) {
  return new Date(ts * 1000).toLocaleTimeString([], { hour12: false });
}

function noteLatency(ts) {
  if (typeof ts !== "number") return;
  const samples = window.camoffload.latencies;
  samples.push(Date.now() / 1000 - ts);
  if (samples.length > LATENCY_SAMPLES) samples.splice(0, samples.length - LATENCY_SAMPLES);
}

function setPill(el, text, cls) {
  el.textContent = text;
  el.className = `pill ${cls}`;
}

async function sendControl(edgeId, feature, payload, note) {
  note.textContent = `sending ${feature} ${payload}…`;
  const entry = edges.get(edgeId);
  if (entry) entry.pending = { feature, payload };
  try {
    const response = await fetch(`api/control/${encodeURIComponent(edgeId)}/${feature}`, {
      method: "POST",
      headers: { "X-Camoffload": "control", "Content-Type": "text/plain" },
      body: payload,
    });
    window.camoffload.controlsSent += 1;
    note.textContent = response.status === 202
      ? `${feature} ${payload} sent; waiting for the edge`
      : `${feature} not sent: ${await response.text()}`;
  } catch (error) {
    note.textContent = `${feature} not sent: ${error}`;
  }
}

function makeChart(el, series, scales) {
  const axes = [{ size: 30 }, { scale: series[0].scale, size: 45 }];
  if (series.some((s) => s.scale === "right")) {
    axes.push({ side: 1, scale: "right", size: 45, grid: { show: false } });
  }
  const opts = {
    width: Math.max(el.clientWidth, 200),
    height: 150,
    legend: { live: false },
    cursor: { show: false },
    scales,
    axes,
    series: [{}, ...series],
  };
  return new uPlot(opts, [[], ...series.map(() => [])], el);
}

function createEdge(id) {
  const el = document.getElementById("edge-card").content.firstElementChild.cloneNode(true);
  el.dataset.edge = id;
  el.querySelector('[data-field="id"]').textContent = id;
  document.querySelector("#edges .empty")?.remove();
  const list = document.getElementById("edges");
  const after = [...list.children].find((card) => card.dataset.edge > id);
  list.insertBefore(el, after ?? null);
  const note = el.querySelector('[data-field="control-note"]');
  const button = el.querySelector('[data-control="offload"]');
  button.addEventListener("click", () => {
    const now = edges.get(id).data.controls?.offload;
    sendControl(id, "offload", now === "OFF" ? "ON" : "OFF", note);
  });
  const select = el.querySelector('[data-control="policy"]');
  select.addEventListener("change", () => {
    if (select.value) sendControl(id, "policy", select.value, note);
  });
  const charts = {
    share: makeChart(el.querySelector('[data-chart="share"]'), [
      { label: "offloaded %", stroke: "#2f6fdf", width: 1.5, scale: "%" },
      { label: "capture fps", stroke: "#1f8a4c", width: 1.5, scale: "right" },
    ], { x: { time: true }, "%": { range: [0, 100] } }),
    rtt: makeChart(el.querySelector('[data-chart="rtt"]'), [
      { label: "rtt p50 ms", stroke: "#6b7385", width: 1.5, scale: "ms" },
      { label: "rtt p95 ms", stroke: "#c0392b", width: 1.5, scale: "ms" },
    ], { x: { time: true }, ms: { range: (u, min, max) => [0, Math.max(10, max * 1.1)] } }),
  };
  const entry = { el, data: {}, charts, series: [], pending: null };
  edges.set(id, entry);
  return entry;
}

function updateEdge(id, data) {
  if (data === null) {
    edges.get(id)?.el.remove();
    edges.delete(id);
    return;
  }
  const entry = edges.get(id) ?? createEdge(id);
  const isNew = data.ts !== entry.data.ts;
  entry.data = data;
  const el = entry.el;
  const field = (name) => el.querySelector(`[data-field="${name}"]`);
  field("capture_fps").textContent = fmt(data.capture_fps, 1, " fps");
  field("skipped").textContent = `${data.skipped ?? 0} (${fmt(data.skipped_fps, 1, "/s")})`;
  field("offload_share").textContent = fmt((data.offload_share ?? 0) * 100, 0, " %");
  field("rtt").textContent = `${fmt(data.rtt_ms_p50, 0)} / ${fmt(data.rtt_ms_p95, 0)} ms`;
  field("bytes_per_s").textContent = bytesPerSecond(data.bytes_per_s);
  field("decided").textContent = (data.decided ?? 0).toLocaleString();
  field("in_flight").textContent = data.in_flight ?? 0;
  const counts = Object.entries(data.counts ?? {}).filter(([, n]) => n > 0);
  field("counts").textContent = counts.length ? counts.map(([l, n]) => `${n} ${l}`).join(", ") : "nothing";
  const offload = data.controls?.offload;
  const button = el.querySelector('[data-control="offload"]');
  button.textContent = `offload: ${offload ?? "?"}`;
  button.className = offload === "ON" ? "on" : offload === "OFF" ? "off" : "";
  button.dataset.state = offload ?? "";
  const pending = entry.pending;
  if (pending && data.controls?.[pending.feature] === pending.payload) {
    // The edge's retained state echoes the change: it is in force, not only sent.
    field("control-note").textContent = `${pending.feature} is ${pending.payload}`;
    entry.pending = null;
  }
  const select = el.querySelector('[data-control="policy"]');
  if (data.controls?.policy && document.activeElement !== select) select.value = data.controls.policy;
  for (const point of data.points ?? []) entry.series.push(point);
  const cutoff = Date.now() / 1000 - CHART_SECONDS;
  while (entry.series.length && entry.series[0][0] < cutoff) entry.series.shift();
  const column = (i, scale = 1) => entry.series.map((p) => (p[i] === null ? null : p[i] * scale));
  const t = column(0);
  entry.charts.share.setData([t, column(1, 100), column(4)]);
  entry.charts.rtt.setData([t, column(2), column(3)]);
  updateSnapshots(id, el.querySelector('[data-field="snapshots"]'), data.snapshots ?? {});
  refreshLiveness(entry);
  if (isNew) noteLatency(data.ts);
}

function updateSnapshots(edgeId, holder, versions) {
  for (const [label, version] of Object.entries(versions)) {
    let img = holder.querySelector(`img[data-snapshot="${CSS.escape(label)}"]`);
    if (!img) {
      const figure = document.createElement("figure");
      img = document.createElement("img");
      img.dataset.snapshot = label;
      img.alt = `${label} snapshot from ${edgeId}`;
      const caption = document.createElement("figcaption");
      caption.textContent = label;
      figure.append(img, caption);
      holder.append(figure);
    }
    if (img.dataset.version !== String(version)) {
      img.dataset.version = String(version);
      img.src = `snapshot/${encodeURIComponent(edgeId)}/${encodeURIComponent(label)}?v=${version}`;
    }
  }
  for (const img of holder.querySelectorAll("img[data-snapshot]")) {
    if (!(img.dataset.snapshot in versions)) img.parentElement.remove();
  }
}

function refreshLiveness(entry) {
  const { el, data } = entry;
  const age = Date.now() / 1000 - (data.received ?? 0);
  const online = data.online && age < STALE_SECONDS;
  setPill(el.querySelector('[data-field="online"]'), online ? "online" : data.online ? `silent ${age.toFixed(0)} s` : "offline", online ? "on" : "off");
  const link = el.querySelector('[data-field="connected"]');
  setPill(link, data.connected ? "to broker" : "deciding locally", data.connected ? "on" : "warn");
  link.hidden = !online; // an offline edge's last word on its link is old news
  el.classList.toggle("offline", !online);
  el.dataset.online = online ? "yes" : "no";
}

function updateWorker(id, data) {
  const body = document.querySelector("#workers tbody");
  if (data === null) {
    workers.get(id)?.el.remove();
    workers.delete(id);
    return;
  }
  let entry = workers.get(id);
  if (!entry) {
    const row = document.createElement("tr");
    row.dataset.worker = id;
    for (const name of ["id", "online", "device", "models", "queue", "mean_batch_size", "throughput_fps", "latency_ms_per_image", "frames_done", "frames_rejected"]) {
      const cell = document.createElement("td");
      cell.dataset.field = name;
      row.append(cell);
    }
    const after = [...body.children].find((r) => r.dataset.worker > id);
    body.insertBefore(row, after ?? null);
    entry = { el: row, data: {} };
    workers.set(id, entry);
  }
  const isNew = data.ts !== entry.data.ts;
  entry.data = data;
  const cell = (name) => entry.el.querySelector(`[data-field="${name}"]`);
  cell("id").textContent = id;
  cell("device").textContent = data.device;
  cell("models").textContent = (data.models ?? []).join(", ");
  cell("queue").textContent = `${data.queue_depth} / ${data.queue_capacity}`;
  cell("mean_batch_size").textContent = fmt(data.mean_batch_size, 1);
  cell("throughput_fps").textContent = fmt(data.throughput_fps, 1);
  cell("latency_ms_per_image").textContent = fmt(data.latency_ms_per_image, 1);
  cell("frames_done").textContent = (data.frames_done ?? 0).toLocaleString();
  cell("frames_rejected").textContent = (data.frames_rejected ?? 0).toLocaleString();
  refreshWorkerLiveness(entry);
  if (isNew) noteLatency(data.ts);
}

function refreshWorkerLiveness(entry) {
  const age = Date.now() / 1000 - (entry.data.received ?? 0);
  const online = entry.data.online && age < STALE_SECONDS;
  const cell = entry.el.querySelector('[data-field="online"]');
  cell.innerHTML = "";
  const pill = document.createElement("span");
  setPill(pill, online ? "online" : "offline", online ? "on" : "off");
  cell.append(pill);
  entry.el.dataset.online = online ? "yes" : "no";
}

function addFeed(items) {
  const list = document.getElementById("feed");
  for (const item of items) {
    const li = document.createElement("li");
    li.className = item.kind;
    const time = document.createElement("span");
    time.className = "t";
    time.textContent = clock(item.ts);
    li.append(time);
    const text = item.kind === "object"
      ? `${item.edge}: ${item.label} ${item.type}${item.zones?.length ? ` in ${item.zones.join(", ")}` : ""}${item.score ? ` (${fmt(item.score, 2)})` : ""}`
      : `${item.edge} #${item.seq}: ${item.decision}${item.latency_ms !== null && item.latency_ms !== undefined ? ` in ${fmt(item.latency_ms, 0)} ms` : ""}${item.bytes ? `, ${(item.bytes / 1000).toFixed(1)} kB` : ""}`;
    li.append(document.createTextNode(text));
    list.prepend(li);
  }
  while (list.children.length > FEED_ROWS) list.lastElementChild.remove();
}

function apply(message) {
  if (message.type === "full") {
    window.camoffload.fulls += 1;
    for (const id of [...edges.keys()]) if (!(id in message.edges)) updateEdge(id, null);
    for (const id of [...workers.keys()]) if (!(id in message.workers)) updateWorker(id, null);
    for (const entry of edges.values()) entry.series = [];
    document.getElementById("feed").innerHTML = "";
  } else {
    window.camoffload.patches += 1;
  }
  setPill(document.getElementById("broker"), message.broker ? "broker: connected" : "broker: reconnecting", message.broker ? "on" : "off");
  for (const [id, data] of Object.entries(message.edges)) updateEdge(id, data);
  for (const [id, data] of Object.entries(message.workers)) updateWorker(id, data);
  addFeed(message.feed ?? []);
  const online = [...workers.values()].filter((w) => w.el.dataset.online === "yes").length;
  document.getElementById("totals").textContent = `${edges.size} cameras, ${online} of ${workers.size} workers online`;
}

function connect() {
  const link = document.getElementById("page-link");
  const source = new EventSource("api/events");
  source.onopen = () => setPill(link, "page: live", "on");
  source.onerror = () => setPill(link, "page: reconnecting", "off"); // EventSource retries
  source.onmessage = (event) => apply(JSON.parse(event.data));
}

setInterval(() => {
  for (const entry of edges.values()) refreshLiveness(entry);
  for (const entry of workers.values()) refreshWorkerLiveness(entry);
}, 1000);
connect();
