// dialer-stats dashboard: plain JS, no build step. Stats are pushed over Server-Sent
// Events; on every push the batches table is refreshed with an ETag (304 when unchanged),
// and so are the charts of call records by event time (uPlot, vendored), which are also
// polled: time moves on even when no event arrives.
"use strict";
const $ = (id) => document.getElementById(id);
const state = {
  token: localStorage.getItem("dialerStatsToken") || "", campaign: "", campaigns: [], etags: {}, source: null,
  stats: null, progress: {}, progressAt: 0,
};
$("token").value = state.token;

// ETags are kept per slot (by default the path): a chart whose query moves with the clock
// keeps one entry, and sends it only while its query is the same.
function headers(path, slot) {
  const h = { Authorization: "Bearer " + state.token };
  const cached = state.etags[slot];
  if (cached && cached.path === path) h["If-None-Match"] = cached.etag;
  return h;
}

async function get(path, slot = path) {
  const response = await fetch(path, { headers: headers(path, slot), cache: "no-store" });
  if (response.status === 304) return { body: state.etags[slot].body, changed: false, response };
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(response.status + " " + (typeof detail === "string" ? detail : JSON.stringify(detail)));
  }
  const body = await response.json();
  const etag = response.headers.get("ETag");
  if (etag) state.etags[slot] = { path, etag, body };
  return { body, changed: true, response };
}

function bars(el, entries) {
  const max = Math.max(1, ...entries.map(([, n]) => n));
  el.innerHTML = entries.map(([name, n]) =>
    `<div class="bar" data-key="${name}"><span>${name}</span><div class="track"><div class="fill" style="width:${(100 * n) / max}%"></div></div><span class="num">${n}</span></div>`
  ).join("") || "<em>none</em>";
}

function render(stats, batches) {
  const total = Object.values(stats.contact_counts).reduce((a, b) => a + b, 0);
  $("kpis").innerHTML = [
    ["Contacts", total], ["In flight", stats.in_flight_contacts],
    ["Call attempts", stats.total_call_attempts], ["Follow-up attempts", stats.follow_up_attempts],
  ].map(([k, v]) => `<div class="kpi" data-kpi="${k}"><b>${v}</b>${k}</div>`).join("");
  bars($("contacts"), Object.entries(stats.contact_counts));
  bars($("calls"), Object.entries(stats.call_counters));
  bars($("retries"), Object.entries(stats.retry_breakdown));
  bars($("batchcounts"), Object.entries(stats.batch_counts));
  const cols = ["pending", "dispatched", "in_flight", "retrying", "completed", "failed", "busy", "no_answer", "skipped"];
  $("batches").querySelector("thead").innerHTML =
    `<tr><th>batch</th><th>status</th><th>progress</th><th>done / min</th><th>ETA</th><th>total</th>${cols.map((c) => `<th>${c}</th>`).join("")}</tr>`;
  $("batches").querySelector("tbody").innerHTML = batches.map((b) => {
    const done = b.counters.completed + b.counters.failed + b.counters.busy + b.counters.no_answer
      + b.counters.skipped + b.counters.max_retries_reached;
    const pct = b.total_contacts ? Math.min(100, (100 * done) / b.total_contacts) : 0;
    const p = state.progress[b.batch_id];
    const rate = p ? p.rate_per_minute.toFixed(1) : "–";
    const eta = p && p.eta ? new Date(p.eta).toLocaleTimeString() : "–";
    return `<tr data-batch="${b.batch_id}" data-eta="${p && p.eta ? p.eta : ""}"><td>${b.batch_id}</td><td>${b.status}</td>`
      + `<td><span class="progress"><span style="width:${pct}%"></span></span></td><td class="rate">${rate}</td><td class="eta">${eta}</td>`
      + `<td>${b.total_contacts}</td>${cols.map((c) => `<td>${b.counters[c]}</td>`).join("")}</tr>`;
  }).join("");
}

// -- batch progress: the rate of the last 15 minutes and the ETA of unfinished batches ----

const PROGRESS_AT_MOST = 25;  // batches asked per refresh (the first unfinished ones)

async function refreshProgress(batches) {
  const base = `/api/v1/campaigns/${encodeURIComponent(state.campaign)}/batches/`;
  const open = batches.filter((b) => b.status !== "completed" && b.status !== "cancelled" && b.status !== "expired")
    .slice(0, PROGRESS_AT_MOST);
  const found = {};
  await Promise.all(open.map(async (b) => {
    try {
      const response = await fetch(base + encodeURIComponent(b.batch_id) + "/progress",
        { headers: { Authorization: "Bearer " + state.token }, cache: "no-store" });
      if (response.ok) found[b.batch_id] = await response.json();
    } catch (error) { /* shown as – until the next refresh */ }
  }));
  state.progress = found;
  state.progressAt = Date.now();
}

// -- the organization: its rollup, and every campaign with a sparkline of its last hour ---

const ORG_CAMPAIGNS_AT_MOST = 50;

function sparkline(points) {
  const counts = points.map((p) => p.attempts);
  const max = Math.max(1, ...counts);
  const step = 120 / Math.max(1, counts.length - 1);
  const xy = counts.map((n, i) => `${(i * step).toFixed(1)},${(23 - (22 * n) / max).toFixed(1)}`).join(" ");
  return `<svg class="spark" viewBox="0 0 120 24" data-calls="${counts.reduce((a, b) => a + b, 0)}"><polyline points="${xy}"/></svg>`;
}

function rateText(counters) {
  const attempts = counters.completed_calls + counters.failed_calls + counters.busy_calls + counters.no_answer_calls;
  return attempts ? (100 * counters.completed_calls / attempts).toFixed(1) + " %" : "–";
}

async function refreshOrg() {
  if (!state.campaigns.length) return;
  try {
    const { body: org } = await get("/api/v1/stats");
    const contacts = Object.values(org.contact_counts).reduce((a, b) => a + b, 0);
    $("org-note").textContent = `${org.organization_id} · ${org.campaigns} campaigns`;
    $("org-kpis").innerHTML = [
      ["Contacts", contacts], ["In flight", org.in_flight_contacts], ["Call attempts", org.total_call_attempts],
      ["Connect rate", rateText(org.call_counters)],
    ].map(([k, v]) => `<div class="kpi" data-kpi="${k}"><b>${v}</b>${k}</div>`).join("");
    const hourFrom = new Date(Math.floor(Date.now() / 60000) * 60000 - 59 * 60000).toISOString();
    const rows = await Promise.all(state.campaigns.slice(0, ORG_CAMPAIGNS_AT_MOST).map(async (c) => {
      const base = `/api/v1/campaigns/${encodeURIComponent(c)}`;
      const [{ body: stats }, { body: series }] = await Promise.all([
        get(base + "/stats"),
        get(`${base}/timeseries?interval=1m&from=${encodeURIComponent(hourFrom)}`, "spark:" + c),
      ]);
      const total = Object.values(stats.contact_counts).reduce((a, b) => a + b, 0);
      return `<tr data-campaign="${c}" class="${c === state.campaign ? "current" : ""}"><td>${c}</td><td>${sparkline(series.points)}</td>`
        + `<td>${total}</td><td>${stats.in_flight_contacts}</td><td>${stats.total_call_attempts}</td>`
        + `<td>${stats.call_counters.completed_calls}</td><td>${rateText(stats.call_counters)}</td></tr>`;
    }));
    $("org-campaigns").querySelector("tbody").innerHTML = rows.join("");
    document.body.dataset.orgContacts = String(contacts);
  } catch (error) {
    $("org-note").textContent = String(error.message || error);
  }
}

let orgTimer = null;
function scheduleOrg(delay) {
  if (orgTimer !== null) return;
  orgTimer = setTimeout(async () => { orgTimer = null; await refreshOrg(); }, delay);
}

$("org-campaigns").addEventListener("click", (event) => {
  const row = event.target.closest("tr[data-campaign]");
  if (!row || row.dataset.campaign === state.campaign) return;
  $("campaign").value = row.dataset.campaign;
  $("campaign").dispatchEvent(new Event("change"));
});

async function refreshBatches() {
  const base = `/api/v1/campaigns/${encodeURIComponent(state.campaign)}`;
  try {
    const batches = await get(base + "/batches?limit=100");
    if (Date.now() - state.progressAt > 15000) await refreshProgress(batches.body);
    render(state.stats, batches.body);
    $("status").textContent = `live · revision ${state.revision} · updated ${new Date().toLocaleTimeString()}`;
    $("status").className = "";
    document.body.dataset.revision = state.revision;
  } catch (error) {
    $("status").textContent = String(error.message || error);
    $("status").className = "error";
  }
}

function follow() {
  if (state.source) state.source.close();
  if (!state.campaign) return;
  const url = `/api/v1/campaigns/${encodeURIComponent(state.campaign)}/stats/stream?access_token=${encodeURIComponent(state.token)}`;
  state.source = new EventSource(url);
  state.source.addEventListener("stats", (message) => {
    state.stats = JSON.parse(message.data);
    state.revision = message.lastEventId;
    $("campaign-note").textContent = state.campaign;
    refreshBatches();
    scheduleCharts(1000);
    scheduleOrg(1000);
  });
  state.source.addEventListener("revoked", () => {
    state.source.close();  // reconnecting would only get a 401
    $("status").textContent = "token revoked: enter a valid token";
    $("status").className = "error";
  });
  state.source.onerror = () => {
    $("status").textContent = "reconnecting…";
    $("status").className = "error";
  };
}

async function connect() {
  state.token = $("token").value.trim();
  localStorage.setItem("dialerStatsToken", state.token);
  try {
    const { body } = await get("/api/v1/campaigns");
    $("campaign").innerHTML = body.campaigns.map((c) => `<option>${c}</option>`).join("");
    state.campaigns = body.campaigns;
    state.campaign = body.campaigns[0] || "";
    state.progress = {}; state.progressAt = 0;
    scheduleOrg(0);
    $("status").textContent = body.campaigns.length ? `organization ${body.organization_id}` : "no campaigns yet";
    follow();
    resetCharts();
  } catch (error) {
    $("status").textContent = String(error.message || error);
    $("status").className = "error";
  }
}

// -- charts: call records by their own occurred_at, from the timeseries endpoint ---------

const OUTCOMES = [["completed", "#2e9d5b"], ["failed", "#d64545"], ["busy", "#e0a030"], ["no_answer", "#8a94a6"]];
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
const CHART_HEIGHT = 220;
const charts = {};  // element id -> { chart, points }
let chartTimer = null;
let chartsRunning = null;

// Stacked bars: each outcome's bar reaches the sum of it and the outcomes before it, and
// the tallest is drawn first; then the connect rate in percent.
function chartData(points) {
  const xs = points.map((p) => Date.parse(p.start) / 1000);
  const stacks = [];
  let below = points.map(() => 0);
  for (const [name] of OUTCOMES) {
    below = below.map((v, i) => v + points[i].calls[name]);
    stacks.push(below);
  }
  const rate = points.map((p) => (p.connect_rate === null ? null : 100 * p.connect_rate));
  return [xs, ...stacks.reverse(), rate];
}

function makeChart(id, yLabel) {
  const holder = { points: [] };
  const bars = uPlot.paths.bars({ size: [0.9, 48], align: 1 });
  const series = [{}];
  for (const [name, color] of OUTCOMES.slice().reverse()) {
    series.push({
      label: name, fill: color, stroke: color, width: 0, paths: bars, points: { show: false },
      value: (u, v, si, i) => (i == null || !holder.points[i] ? "–" : String(holder.points[i].calls[name])),
    });
  }
  series.push({
    label: "connect rate", scale: "%", stroke: "#3b6fd8", width: 2, points: { show: false },
    value: (u, v) => (v == null ? "–" : v.toFixed(1) + " %"),
  });
  const el = $(id);
  holder.chart = new uPlot({
    width: el.clientWidth || 800, height: CHART_HEIGHT, series,
    scales: { y: { range: (u, min, max) => [0, Math.max(1, Math.ceil(max * 1.1))] }, "%": { range: [0, 100] } },
    axes: [
      {},
      { label: yLabel, size: 56 },
      { scale: "%", side: 1, grid: { show: false }, values: (u, ticks) => ticks.map((t) => t + " %") },
    ],
  }, chartData([]), el);
  charts[id] = holder;
  return holder;
}

function hourKpis(points) {
  let attempts = 0, completed = 0, talk = 0;
  for (const p of points) { attempts += p.attempts; completed += p.calls.completed; talk += p.talk_seconds; }
  const rate = attempts ? completed / attempts : null;
  $("hour-kpis").innerHTML = [
    ["connect-rate", "Connect rate", rate === null ? "–" : (100 * rate).toFixed(1) + " %", rate],
    ["attempts", "Calls", String(attempts), attempts],
    ["per-minute", "Calls / minute", (attempts / Math.max(1, points.length)).toFixed(1), attempts / Math.max(1, points.length)],
    ["avg-talk", "Avg talk (completed)", completed ? (talk / completed).toFixed(0) + " s" : "–", completed ? talk / completed : null],
  ].map(([key, label, text, value]) =>
    `<div class="kpi" id="hour-${key}" data-value="${value === null ? "" : value}"><b>${text}</b>${label}</div>`
  ).join("");
}

async function drawSeries(id, yLabel, path, after) {
  const holder = charts[id] || makeChart(id, yLabel);
  try {
    const { body, changed } = await get(path, id);
    if (!changed && holder.points === body.points) return;
    holder.points = body.points;
    holder.chart.setData(chartData(body.points));
    $(id).dataset.interval = body.interval;
    $(id).dataset.points = String(body.points.length);
    $(id).dataset.attempts = String(body.points.reduce((n, p) => n + p.attempts, 0));
    $(id).title = "";
    delete $(id).dataset.error;
    if (after) after(body);
  } catch (error) {
    $(id).title = String(error.message || error);
    $(id).dataset.error = $(id).title;
  }
}

function localDate() {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

async function refreshCharts() {
  if (!state.campaign || typeof uPlot === "undefined") return;
  const base = `/api/v1/campaigns/${encodeURIComponent(state.campaign)}/timeseries`;
  const tz = encodeURIComponent(ZONE);
  // The current minute and the 59 before it; `to` defaults to now.
  const hourFrom = new Date(Math.floor(Date.now() / 60000) * 60000 - 59 * 60000).toISOString();
  await drawSeries("minute-chart", "calls / min",
    `${base}?interval=1m&from=${encodeURIComponent(hourFrom)}&tz=${tz}`, (body) => hourKpis(body.points));
  const interval = $("interval").value;
  await drawSeries("day-chart", `calls / ${interval}`, `${base}?interval=${interval}&from=${localDate()}&tz=${tz}`,
    (body) => { $("day-note").textContent = `${body.tz} · from ${body.from}`; });
}

// At most one refresh at a time, and at most one waiting.
function scheduleCharts(delay) {
  if (chartTimer !== null) return;
  chartTimer = setTimeout(async () => {
    if (chartsRunning) await chartsRunning;
    chartTimer = null;
    chartsRunning = refreshCharts().finally(() => { chartsRunning = null; });
  }, delay);
}

function dropChart(id) {
  if (!charts[id]) return;
  charts[id].chart.destroy();
  delete charts[id];
  delete state.etags[id];
  for (const key of ["interval", "points", "attempts", "error"]) delete $(id).dataset[key];
}

function resetCharts() {
  for (const id of Object.keys(charts)) dropChart(id);
  $("hour-kpis").innerHTML = "";
  scheduleCharts(0);
}

setInterval(() => {
  scheduleCharts(0); scheduleOrg(0);
  if (state.stats) { state.progressAt = 0; refreshBatches(); }  // the ETA moves with the clock
}, 15000);
window.addEventListener("resize", () => {
  for (const [id, holder] of Object.entries(charts)) holder.chart.setSize({ width: $(id).clientWidth, height: CHART_HEIGHT });
});
$("interval").addEventListener("change", () => { dropChart("day-chart"); scheduleCharts(0); });

$("connect").addEventListener("click", connect);
$("campaign").addEventListener("change", (e) => {
  state.campaign = e.target.value; state.progress = {}; state.progressAt = 0;
  for (const row of document.querySelectorAll("#org-campaigns tbody tr")) row.classList.toggle("current", row.dataset.campaign === state.campaign);
  follow(); resetCharts();
});
const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromUrl) { $("token").value = fromUrl; }
if ($("token").value) connect();
