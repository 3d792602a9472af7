// dialer-stats dashboard: plain JS, no build step. Stats are pushed over Server-Sent
// Events; on every push the batches table is refreshed with an ETag (304 when unchanged).
"use strict";
const $ = (id) => document.getElementById(id);
const state = { token: localStorage.getItem("dialerStatsToken") || "", campaign: "", etags: {}, source: null, stats: null };
$("token").value = state.token;

function headers(path) {
  const h = { Authorization: "Bearer " + state.token };
  if (state.etags[path]) h["If-None-Match"] = state.etags[path].etag;
  return h;
}

async function get(path) {
  const response = await fetch(path, { headers: headers(path), cache: "no-store" });
  if (response.status === 304) return { body: state.etags[path].body, changed: false, response };
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(response.status + " " + (typeof detail === "string" ? detail : JSON.stringify(detail)));
  }
  const body = await response.json();
  const etag = response.headers.get("ETag");
  if (etag) state.etags[path] = { etag, body };
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
    `<tr><th>batch</th><th>status</th><th>progress</th><th>total</th>${cols.map((c) => `<th>${c}</th>`).join("")}</tr>`;
  $("batches").querySelector("tbody").innerHTML = batches.map((b) => {
    const done = b.counters.completed + b.counters.failed + b.counters.busy + b.counters.no_answer
      + b.counters.skipped + b.counters.max_retries_reached;
    const pct = b.total_contacts ? Math.min(100, (100 * done) / b.total_contacts) : 0;
    return `<tr><td>${b.batch_id}</td><td>${b.status}</td><td><span class="progress"><span style="width:${pct}%"></span></span></td>`
      + `<td>${b.total_contacts}</td>${cols.map((c) => `<td>${b.counters[c]}</td>`).join("")}</tr>`;
  }).join("");
}

async function refreshBatches() {
  const base = `/api/v1/campaigns/${encodeURIComponent(state.campaign)}`;
  try {
    const batches = await get(base + "/batches?limit=100");
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
    refreshBatches();
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
    state.campaign = body.campaigns[0] || "";
    $("status").textContent = body.campaigns.length ? `organization ${body.organization_id}` : "no campaigns yet";
    follow();
  } catch (error) {
    $("status").textContent = String(error.message || error);
    $("status").className = "error";
  }
}

$("connect").addEventListener("click", connect);
$("campaign").addEventListener("change", (e) => { state.campaign = e.target.value; follow(); });
const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromUrl) { $("token").value = fromUrl; }
if ($("token").value) connect();
