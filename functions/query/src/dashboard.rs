//! The dashboard's two pages, each one self-contained HTML document (inline CSS and JS, charts drawn as
//! inline SVG, no external request except to this function's own API), so they work offline and under a
//! strict CSP.
//!
//! Both are served under a strict content security policy ([`content_security_policy`]): each page's one
//! inline script and one inline style are allowed by their SHA-256 hashes, computed from the page text, and
//! nothing else runs (no `'unsafe-inline'`, no style attributes, no frames, no plugins, no `<base>`). Their
//! shared parts (colours and layout, number formatting, the API call that sends a lapsed session back to the
//! login form, the SVG helpers) are one text each, spliced into both pages at compile time.
//!
//! * [`PAGE`] (`/`), the overview. Every 5 seconds two API calls, whatever the number of campaigns:
//!   `GET /v1/overview` (today's and the last hour's totals across campaigns, events per second, the
//!   realtime and settled lags, events per minute) and one page of `GET /v1/campaigns?order=spend|impressions
//!   &limit=20[&q=][&offset=]` (the table: today's figures and a sparkline of today's impressions per hour
//!   per row; a click on a row's name opens its campaign view). Sort order, search and the page number live in
//!   the address (`/?order=impressions&q=c1&page=2`), so a link shows the same table; a page turn or a new
//!   sort order is a history entry (the browser's Back and Forward step through them), typing in the search
//!   box replaces the current one.
//! * [`CAMPAIGN_PAGE`] (`/campaigns/{id}`), one campaign. The range (`?range=hour|today|30d`: the last hour
//!   per minute, today per hour, 30 days per day) is in the address; every 5 seconds it reads
//!   `GET /v1/campaigns/{id}/series` and `GET /v1/campaigns/{id}/ads` over that range (two calls) and shows
//!   the realtime and settled series side by side, their totals over the range with the difference (the
//!   invalid traffic the settled lane removed, and what is not settled yet) in numbers, and the per-ad table.
//!
//! The timer skips a refresh while the previous one is still in flight, so a slow API never has requests
//! piling up. Live updates change text and path data in place (elements are created once and kept), so nothing
//! flickers. Elements the browser tests read carry `data-*` attributes with the raw numbers: figures
//! `data-figure`, table rows `data-campaign` / `data-ad` with cells `data-col` and `data-value`, charts
//! `data-points` and `data-max`; `body[data-ready]` counts finished refreshes.

/// The shared style of both pages.
macro_rules! common_css {
    () => {
        r#"
  :root { --bg:#0f1419; --card:#182029; --fg:#e6edf3; --muted:#9aa7b4; --imp:#4fa3ff; --clk:#ffb347; --st:#7ee787; --grid:#2a3540; --focus:#ffd866; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, sans-serif; background:var(--bg); color:var(--fg); }
  a { color:var(--imp); }
  a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible { outline:2px solid var(--focus); outline-offset:2px; }
  header { display:flex; flex-wrap:wrap; align-items:baseline; gap:8px 16px; padding:12px 16px; border-bottom:1px solid var(--grid); }
  header h1 { font-size:18px; margin:0; }
  header form { margin-left:auto; }
  button, select, input { font:inherit; color:var(--fg); background:var(--card); border:1px solid var(--grid); border-radius:6px; padding:6px 10px; }
  button[aria-pressed="true"] { background:var(--imp); color:#05121f; border-color:var(--imp); }
  button:disabled { opacity:.45; }
  #status { color:var(--muted); }
  #status.error { color:#ff8a8a; }
  main { padding:12px 16px; display:grid; gap:16px; }
  section.card { background:var(--card); border-radius:8px; padding:12px 16px; min-width:0; }
  h2 { font-size:15px; margin:0 0 8px; }
  .figures { display:grid; grid-template-columns:repeat(auto-fill, minmax(130px, 1fr)); gap:8px 16px; margin:0; }
  .figures div { min-width:0; }
  .figures dt { color:var(--muted); font-size:12px; }
  .figures dd { margin:0; font-size:20px; font-weight:600; font-variant-numeric:tabular-nums; }
  .controls { display:flex; flex-wrap:wrap; gap:8px 12px; align-items:center; margin-bottom:8px; }
  .scroll { overflow-x:auto; }
  table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
  th, td { padding:6px 8px; text-align:right; border-bottom:1px solid var(--grid); white-space:nowrap; }
  th:first-child, td:first-child { text-align:left; }
  th { color:var(--muted); font-weight:500; font-size:12px; }
  caption { text-align:left; color:var(--muted); padding-bottom:4px; }
  td.name { font-family:ui-monospace, monospace; }
  svg { display:block; }
  svg.spark { width:120px; height:24px; }
  svg.chart { width:100%; height:auto; }
  .legend { color:var(--muted); font-size:12px; }
  .legend i { display:inline-block; width:18px; height:3px; vertical-align:middle; margin:0 4px 0 10px; }
  .legend i.rt { background:var(--imp); } .legend i.st { background:var(--st); }
  .visually-hidden { position:absolute; width:1px; height:1px; overflow:hidden; clip:rect(0 0 0 0); white-space:nowrap; }
  @media (max-width: 600px) { .figures dd { font-size:17px; } th, td { padding:5px 6px; } }
"#
    };
}

/// The shared script of both pages: formatting, the API call, SVG helpers.
macro_rules! common_js {
    () => {
        r#"
"use strict";
const SVG_NS = "http://www.w3.org/2000/svg";
const REFRESH_MS = 5000;
function fmt(n) { return n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e4 ? (n / 1e3).toFixed(1) + "k" : String(n); }
function money(micros) { return "$" + (micros / 1e6).toFixed(2); }
function pct(x) { return x === null ? "–" : (x * 100).toFixed(2) + "%"; }
function seconds(ms) { return ms === null ? "–" : ms < 60000 ? (ms / 1000).toFixed(1) + " s" : (ms / 60000).toFixed(1) + " min"; }
function svgEl(tag, attrs, parent) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}
/// Sets a text only when it changed (no reflow, no flicker), with the raw value in data-value.
function put(node, text, raw) {
  if (node.textContent !== text) node.textContent = text;
  if (raw !== undefined && node.dataset.value !== String(raw)) node.dataset.value = String(raw);
}
async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (response.status === 401) {
    // The session ended (expired, signed out, or the token rotated twice): back to the login form.
    location.replace("/");
    throw new Error("the session ended: sign in again");
  }
  if (!response.ok) {
    let detail = "";
    try { detail = (await response.json()).detail || ""; } catch (e) { detail = ""; }
    throw new Error(url + " answered " + response.status + (detail ? ": " + detail : ""));
  }
  return response.json();
}
/// A polyline path through values scaled to w x h from (x0, y0) (a flat line when all are zero).
function linePath(values, w, h, max, x0 = 0, y0 = 0) {
  const n = values.length;
  const x = i => x0 + (n <= 1 ? 0 : i * w / (n - 1));
  const y = v => y0 + h - 2 - (h - 4) * (max > 0 ? v / max : 0);
  return values.map((v, i) => (i ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1)).join(" ");
}
function setStatus(ok, text) {
  const status = document.getElementById("status");
  status.className = ok ? "" : "error";
  put(status, text);
}
function markReady() { document.body.dataset.ready = String(Number(document.body.dataset.ready || 0) + 1); }
"#
    };
}

/// The overview page (`/`).
pub const PAGE: &str = concat!(
    r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tally — overview</title>
<link rel="icon" href="data:,">
<style>"##,
    common_css!(),
    r##"</style>
</head>
<body>
<header><h1>tally</h1><span>all campaigns, today (UTC)</span><span id="status" role="status" aria-live="polite">loading…</span>
<form method="post" action="/logout"><button type="submit">Sign out</button></form></header>
<main>
<section class="card" aria-labelledby="today-h"><h2 id="today-h">Today</h2><dl class="figures" id="today"></dl></section>
<section class="card" aria-labelledby="hour-h"><h2 id="hour-h">Last hour</h2><dl class="figures" id="hour"></dl></section>
<section class="card" aria-labelledby="pipe-h"><h2 id="pipe-h">Pipeline</h2><dl class="figures" id="pipeline"></dl></section>
<section class="card" aria-labelledby="table-h" id="campaigns">
<h2 id="table-h">Campaigns</h2>
<div class="controls">
  <span id="sort-label">Sort by</span>
  <span role="group" aria-labelledby="sort-label">
    <button type="button" id="sort-spend" data-order="spend" aria-pressed="true">Spend</button>
    <button type="button" id="sort-impressions" data-order="impressions" aria-pressed="false">Impressions</button>
  </span>
  <label for="search">Search campaigns</label>
  <input id="search" type="search" placeholder="id contains…" maxlength="64" autocomplete="off" spellcheck="false">
  <span id="matched"></span>
</div>
<div class="scroll"><table>
<caption id="table-caption">Today's realtime figures; sorted through the realtime watermark.</caption>
<thead><tr><th scope="col">Campaign</th><th scope="col">Impressions</th><th scope="col">Clicks</th><th scope="col">CTR</th><th scope="col">Conversions</th><th scope="col">Spend</th><th scope="col">Value</th><th scope="col">Users</th><th scope="col">Today per hour</th></tr></thead>
<tbody id="rows"></tbody></table></div>
<p id="empty" hidden>No campaign matches.</p>
<div class="controls"><button type="button" id="prev">Previous page</button><span id="page">page 1</span><button type="button" id="next">Next page</button></div>
</section>
</main>
<script>"##,
    common_js!(),
    r##"
const PAGE_SIZE = 20;
const FIGURES = [
  ["impressions", "Impressions", c => fmt(c.impressions), c => c.impressions],
  ["clicks", "Clicks", c => fmt(c.clicks), c => c.clicks],
  ["ctr", "CTR", c => pct(c.ctr), c => c.ctr],
  ["conversions", "Conversions", c => fmt(c.conversions), c => c.conversions],
  ["spend", "Spend", c => money(c.spend_micros), c => c.spend_micros],
  ["value", "Conversion value", c => money(c.conversion_value_micros), c => c.conversion_value_micros],
  ["users", "Unique users", c => fmt(c.unique_users), c => c.unique_users],
];
const MAX_PAGE = 50000; // offset 1,000,000: the API's limit
// page: 0-based here, 1-based in the address (?page=2 is campaigns 21-40).
const state = { order: "spend", q: "", page: 0 };

function readAddress() {
  const p = new URLSearchParams(location.search);
  state.order = p.get("order") === "impressions" ? "impressions" : "spend";
  state.q = (p.get("q") || "").slice(0, 64);
  const page = Number(p.get("page") || "1");
  state.page = Number.isInteger(page) && page >= 1 && page <= MAX_PAGE ? page - 1 : 0;
  document.getElementById("search").value = state.q;
}
/// Puts the state in the address: a new history entry when `push` (a page, a sort order: Back undoes it),
/// the current one replaced otherwise (typing in the search box).
function writeAddress(push) {
  const p = new URLSearchParams();
  if (state.order !== "spend") p.set("order", state.order);
  if (state.q) p.set("q", state.q);
  if (state.page > 0) p.set("page", String(state.page + 1));
  const url = location.pathname + (p.toString() ? "?" + p : "");
  if (url === location.pathname + location.search) return;
  if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
}

/// The dt/dd pairs of a figure list, made once.
function figures(listId, defs) {
  const list = document.getElementById(listId);
  const out = {};
  for (const [key, label] of defs) {
    const div = document.createElement("div");
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.dataset.figure = listId + "-" + key;
    div.append(dt, dd);
    list.appendChild(div);
    out[key] = dd;
  }
  return out;
}
const today = figures("today", FIGURES);
const hour = figures("hour", FIGURES);
const pipeline = figures("pipeline", [["eps", "Events per second (last minute)"], ["realtime-lag", "Realtime final until"], ["settled-lag", "Settled final until"], ["settled", "Settled impressions today (final)"]]);

function drawFigures(nodes, counts) {
  for (const [key, , show, raw] of FIGURES) put(nodes[key], show(counts), raw(counts));
}

const rows = [];
const COLS = [
  ["impressions", c => fmt(c.impressions), c => c.impressions],
  ["clicks", c => fmt(c.clicks), c => c.clicks],
  ["ctr", c => pct(c.ctr), c => c.ctr],
  ["conversions", c => fmt(c.conversions), c => c.conversions],
  ["spend", c => money(c.spend_micros), c => c.spend_micros],
  ["value", c => money(c.conversion_value_micros), c => c.conversion_value_micros],
  ["users", c => fmt(c.unique_users), c => c.unique_users],
];
/// Row i of the table, made once and reused.
function row(i) {
  if (rows[i]) return rows[i];
  const tr = document.createElement("tr");
  const name = document.createElement("td");
  name.className = "name";
  const link = document.createElement("a");
  name.appendChild(link);
  tr.appendChild(name);
  const cells = {};
  for (const [key] of COLS) {
    const td = document.createElement("td");
    td.dataset.col = key;
    tr.appendChild(td);
    cells[key] = td;
  }
  const sparkCell = document.createElement("td");
  const spark = svgEl("svg", { class: "spark", viewBox: "0 0 120 24", role: "img" }, sparkCell);
  const line = svgEl("path", { fill: "none", stroke: "var(--imp)", "stroke-width": 1.5, d: "" }, spark);
  tr.appendChild(sparkCell);
  document.getElementById("rows").appendChild(tr);
  rows[i] = { tr, link, cells, spark, line };
  return rows[i];
}

function drawRows(list) {
  const shown = list.campaigns;
  shown.forEach((c, i) => {
    const r = row(i);
    r.tr.hidden = false;
    r.tr.dataset.campaign = c.campaign_id;
    put(r.link, c.campaign_id);
    const href = "/campaigns/" + encodeURIComponent(c.campaign_id);
    if (r.link.getAttribute("href") !== href) r.link.setAttribute("href", href);
    for (const [key, show, raw] of COLS) put(r.cells[key], show(c.today.realtime), raw(c.today.realtime));
    const values = c.today_hourly.impressions;
    const max = Math.max(0, ...values);
    const d = linePath(values, 120, 24, max);
    if (r.line.getAttribute("d") !== d) r.line.setAttribute("d", d);
    r.spark.setAttribute("aria-label", c.campaign_id + ": impressions per hour today, at most " + max);
    r.spark.dataset.points = String(values.length);
    r.spark.dataset.max = String(max);
  });
  for (let i = shown.length; i < rows.length; i++) { rows[i].tr.hidden = true; delete rows[i].tr.dataset.campaign; }
  document.getElementById("empty").hidden = shown.length > 0;
  put(document.getElementById("matched"), list.matched + (list.matched === 1 ? " campaign" : " campaigns"), list.matched);
  const first = state.page * PAGE_SIZE;
  put(document.getElementById("page"), shown.length ? "campaigns " + (first + 1) + "–" + (first + shown.length) + " of " + list.matched : "page " + (state.page + 1), state.page + 1);
  document.getElementById("prev").disabled = state.page === 0;
  document.getElementById("next").disabled = !list.next_cursor || state.page + 1 >= MAX_PAGE;
  for (const b of document.querySelectorAll("button[data-order]")) b.setAttribute("aria-pressed", String(b.dataset.order === state.order));
}

let generation = 0, inFlight = 0;
async function refresh() {
  const mine = ++generation;
  inFlight += 1;
  try {
    const params = new URLSearchParams({ order: state.order, limit: String(PAGE_SIZE) });
    if (state.q) params.set("q", state.q);
    if (state.page > 0) params.set("offset", String(state.page * PAGE_SIZE));
    const [overview, list] = await Promise.all([getJson("/v1/overview"), getJson("/v1/campaigns?" + params)]);
    if (mine !== generation) return; // a newer refresh (a click) owns the page
    drawFigures(today, overview.today.realtime);
    drawFigures(hour, overview.last_hour.counts.realtime);
    put(pipeline.eps, overview.events_per_second.toFixed(1), overview.events_per_second);
    put(pipeline["realtime-lag"], seconds(overview.lag_ms.realtime) + " ago", overview.lag_ms.realtime);
    put(pipeline["settled-lag"], seconds(overview.lag_ms.settled) + " ago", overview.lag_ms.settled);
    put(pipeline.settled, fmt(overview.today.settled.impressions), overview.today.settled.impressions);
    drawRows(list);
    setStatus(true, "updated " + overview.as_of.slice(11, 19) + " UTC");
    markReady();
  } catch (error) {
    setStatus(false, String(error.message || error));
  } finally {
    inFlight -= 1;
  }
}

function reset(push) { state.page = 0; writeAddress(push); refresh(); }
for (const b of document.querySelectorAll("button[data-order]")) {
  b.addEventListener("click", () => { if (state.order !== b.dataset.order) { state.order = b.dataset.order; reset(true); } });
}
let typing;
document.getElementById("search").addEventListener("input", e => {
  clearTimeout(typing);
  typing = setTimeout(() => { state.q = e.target.value.trim(); reset(false); }, 250);
});
function turn(by) { state.page += by; writeAddress(true); refresh(); }
document.getElementById("next").addEventListener("click", () => { if (!document.getElementById("next").disabled) turn(1); });
document.getElementById("prev").addEventListener("click", () => { if (state.page > 0) turn(-1); });
// Back and Forward: the address is the state.
window.addEventListener("popstate", () => { readAddress(); refresh(); });
readAddress();
writeAddress(false);
refresh();
// The timer never stacks refreshes on a slow API: it skips while one is in flight (a click does not wait).
setInterval(() => { if (inFlight === 0) refresh(); }, REFRESH_MS);
</script>
</body>
</html>
"##
);

/// The campaign page (`/campaigns/{id}`).
pub const CAMPAIGN_PAGE: &str = concat!(
    r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tally — campaign</title>
<link rel="icon" href="data:,">
<style>"##,
    common_css!(),
    r##"</style>
</head>
<body>
<header><h1><a href="/">tally</a> / <span id="campaign"></span></h1><span id="status" role="status" aria-live="polite">loading…</span>
<form method="post" action="/logout"><button type="submit">Sign out</button></form></header>
<main>
<section class="card" aria-labelledby="range-label">
<div class="controls">
  <span id="range-label">Range</span>
  <span role="group" aria-labelledby="range-label">
    <button type="button" data-range="hour" aria-pressed="false">Last hour, per minute</button>
    <button type="button" data-range="today" aria-pressed="false">Today, per hour</button>
    <button type="button" data-range="30d" aria-pressed="false">30 days, per day</button>
  </span>
</div>
<div class="scroll"><table id="compare">
<caption>Realtime (every deduplicated event) next to settled (valid traffic, final once the settled lane closes a minute) over the range</caption>
<thead><tr><th scope="col">Metric</th><th scope="col">Realtime</th><th scope="col">Settled</th><th scope="col">Realtime − settled</th><th scope="col">as % of realtime</th></tr></thead>
<tbody id="compare-rows"></tbody></table></div>
</section>
<section class="card" aria-labelledby="chart-h">
<h2 id="chart-h">Impressions</h2>
<div class="charts">
<svg class="chart" id="chart" viewBox="0 0 640 200" role="img" aria-label="impressions per bucket, realtime and settled"></svg>
<div class="legend"><i class="rt"></i>realtime<i class="st"></i>settled</div>
</div>
</section>
<section class="card" aria-labelledby="ads-h">
<h2 id="ads-h">Ads</h2>
<div class="scroll"><table>
<caption>Per ad over the range: realtime / settled</caption>
<thead><tr><th scope="col">Ad</th><th scope="col">Impressions</th><th scope="col">Clicks</th><th scope="col">CTR</th><th scope="col">Conversions</th><th scope="col">Spend</th><th scope="col">Value</th><th scope="col">Users</th></tr></thead>
<tbody id="ads"></tbody></table></div>
</section>
</main>
<script>"##,
    common_js!(),
    r##"
const W = 640, H = 200, PAD_L = 44, PAD_B = 22, PAD_T = 8;
// The server's clock decides "now" and "today" (from=today), not the browser's.
const RANGES = {
  hour: { step: "1m", from: "" },
  today: { step: "1h", from: "today" },
  "30d": { step: "1d", from: "" },
};
const id = decodeURIComponent(location.pathname.split("/")[2] || "");
document.getElementById("campaign").textContent = id;
document.title = "tally — " + id;
let range = "hour";

function readAddress() {
  const r = new URLSearchParams(location.search).get("range");
  range = r in RANGES ? r : "hour";
}
function writeAddress() {
  const url = location.pathname + (range === "hour" ? "" : "?range=" + range);
  if (url !== location.pathname + location.search) history.replaceState(null, "", url);
  for (const b of document.querySelectorAll("button[data-range]")) b.setAttribute("aria-pressed", String(b.dataset.range === range));
}

const METRICS = [
  ["impressions", "Impressions", fmt, c => c.impressions],
  ["clicks", "Clicks", fmt, c => c.clicks],
  ["conversions", "Conversions", fmt, c => c.conversions],
  ["spend", "Spend", money, c => c.spend_micros],
  ["value", "Conversion value", money, c => c.conversion_value_micros],
];
const compare = {};
for (const [key, label] of METRICS) {
  const tr = document.createElement("tr");
  tr.dataset.metric = key;
  const th = document.createElement("th");
  th.scope = "row";
  th.textContent = label;
  tr.appendChild(th);
  const cells = {};
  for (const col of ["realtime", "settled", "difference", "percent"]) {
    const td = document.createElement("td");
    td.dataset.col = col;
    tr.appendChild(td);
    cells[col] = td;
  }
  document.getElementById("compare-rows").appendChild(tr);
  compare[key] = cells;
}

function sum(points, lane) {
  const out = { impressions: 0, clicks: 0, conversions: 0, spend_micros: 0, conversion_value_micros: 0 };
  for (const p of points) for (const k of Object.keys(out)) out[k] += p[lane][k];
  return out;
}

function drawCompare(points) {
  const rt = sum(points, "realtime"), st = sum(points, "settled");
  for (const [key, , show, get] of METRICS) {
    const a = get(rt), b = get(st), d = a - b;
    const c = compare[key];
    put(c.realtime, show(a), a);
    put(c.settled, show(b), b);
    put(c.difference, (d > 0 ? "−" : d < 0 ? "+" : "") + show(Math.abs(d)), d);
    put(c.percent, a > 0 ? (100 * d / a).toFixed(1) + "%" : "–", a > 0 ? d / a : "");
  }
}

const chart = document.getElementById("chart");
const grid = svgEl("g", {}, chart);
const rtLine = svgEl("path", { fill: "none", stroke: "var(--imp)", "stroke-width": 2, "data-line": "realtime" }, chart);
const stLine = svgEl("path", { fill: "none", stroke: "var(--st)", "stroke-width": 2, "stroke-dasharray": "5 3", "data-line": "settled" }, chart);
function drawChart(points, step) {
  const rt = points.map(p => p.realtime.impressions), st = points.map(p => p.settled.impressions);
  const max = Math.max(1, ...rt, ...st);
  const w = W - PAD_L - 8, h = H - PAD_T - PAD_B;
  rtLine.setAttribute("d", linePath(rt, w, h, max, PAD_L, PAD_T));
  stLine.setAttribute("d", linePath(st, w, h, max, PAD_L, PAD_T));
  grid.replaceChildren();
  for (const frac of [0, 0.5, 1]) {
    const y = PAD_T + h - 2 - (h - 4) * frac;
    svgEl("line", { x1: PAD_L, x2: W - 8, y1: y, y2: y, stroke: "var(--grid)" }, grid);
    const t = svgEl("text", { x: PAD_L - 6, y: y + 4, "text-anchor": "end", fill: "var(--muted)", "font-size": 11 }, grid);
    t.textContent = fmt(Math.round(max * frac));
  }
  const label = t => step === "1d" ? t.slice(5, 10) : t.slice(11, 16);
  if (points.length) {
    for (const [i, anchor, x] of [[0, "start", PAD_L], [points.length - 1, "end", W - 8]]) {
      const t = svgEl("text", { x, y: H - 6, "text-anchor": anchor, fill: "var(--muted)", "font-size": 11 }, grid);
      t.textContent = label(points[i].t);
    }
  }
  chart.dataset.points = String(points.length);
  chart.dataset.max = String(max);
}

const adRows = new Map();
const AD_COLS = [
  ["impressions", c => fmt(c.impressions), c => c.impressions],
  ["clicks", c => fmt(c.clicks), c => c.clicks],
  ["ctr", c => pct(c.ctr), c => c.ctr],
  ["conversions", c => fmt(c.conversions), c => c.conversions],
  ["spend", c => money(c.spend_micros), c => c.spend_micros],
  ["value", c => money(c.conversion_value_micros), c => c.conversion_value_micros],
  ["users", c => fmt(c.unique_users), c => c.unique_users],
];
function drawAds(ads) {
  const body = document.getElementById("ads");
  const seen = new Set();
  for (const ad of ads) {
    seen.add(ad.ad_id);
    let r = adRows.get(ad.ad_id);
    if (!r) {
      const tr = document.createElement("tr");
      tr.dataset.ad = ad.ad_id;
      const name = document.createElement("td");
      name.className = "name";
      name.textContent = ad.ad_id;
      tr.appendChild(name);
      const cells = {};
      for (const [key] of AD_COLS) {
        const td = document.createElement("td");
        td.dataset.col = key;
        tr.appendChild(td);
        cells[key] = td;
      }
      body.appendChild(tr);
      r = { tr, cells };
      adRows.set(ad.ad_id, r);
    }
    for (const [key, show, raw] of AD_COLS) {
      put(r.cells[key], show(ad.realtime) + " / " + show(ad.settled), raw(ad.realtime));
    }
  }
  for (const [adId, r] of adRows) if (!seen.has(adId)) { r.tr.remove(); adRows.delete(adId); }
}

let generation = 0, inFlight = 0;
async function refresh() {
  const mine = ++generation;
  inFlight += 1;
  try {
    const spec = RANGES[range];
    const base = "/v1/campaigns/" + encodeURIComponent(id);
    const series = await getJson(base + "/series?step=" + spec.step + (spec.from ? "&from=" + spec.from : ""));
    const ads = await getJson(base + "/ads?from=" + series.from);
    if (mine !== generation) return;
    drawCompare(series.points);
    drawChart(series.points, spec.step);
    drawAds(ads.ads);
    document.body.dataset.range = range;
    setStatus(true, "updated, through " + series.to.slice(0, 16).replace("T", " ") + " UTC");
    markReady();
  } catch (error) {
    setStatus(false, String(error.message || error));
  } finally {
    inFlight -= 1;
  }
}
for (const b of document.querySelectorAll("button[data-range]")) {
  b.addEventListener("click", () => { range = b.dataset.range; writeAddress(); refresh(); });
}
readAddress();
writeAddress();
refresh();
// The timer never stacks refreshes on a slow API: it skips while one is in flight (a click does not wait).
setInterval(() => { if (inFlight === 0) refresh(); }, REFRESH_MS);
</script>
</body>
</html>
"##
);

/// The login form (`POST /login`, field `token`), with an optional error line.
pub fn login_page(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tally — sign in</title>
<style>body{{font:15px system-ui,sans-serif;background:#0f1419;color:#e6edf3;display:grid;place-items:center;height:100vh;margin:0}}
form{{background:#182029;padding:24px;border-radius:8px;display:grid;gap:10px;min-width:320px}}
input{{padding:8px;font:inherit}} .error{{color:#ff6b6b;margin:0}}</style></head>
<body><form method="post" action="/login"><h1>tally</h1>{error}
<label for="token">API token (from the stack's query token secret)</label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button></form></body></html>
"#
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The content security policy of an HTML page of this crate: `default-src 'none'`, the page's own inline
/// `<script>` and `<style>` elements allowed by their SHA-256 hashes (computed here from `page`, so an edit to
/// the page cannot leave a stale hash), API calls to this origin only, forms posting to this origin only, no
/// framing, no plugins, no `<base>`.
pub fn content_security_policy(page: &str) -> String {
    let sources = |tag: &str| {
        let hashes: Vec<String> = inline_elements(page, tag)
            .into_iter()
            .map(|text| format!("'sha256-{}'", sha256_base64(text)))
            .collect();
        if hashes.is_empty() {
            "'none'".to_owned()
        } else {
            hashes.join(" ")
        }
    };
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        sources("script"),
        sources("style"),
    )
}

/// The text of every `<tag>…</tag>` element in `page` (an opening tag without attributes, as this crate
/// writes them), as the browser hashes it: everything between the tags.
pub fn inline_elements<'a>(page: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        found.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    found
}

/// Base64 (standard, padded) of the SHA-256 of `text`: a CSP hash source.
fn sha256_base64(text: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directive<'a>(csp: &'a str, name: &str) -> &'a str {
        csp.split(';')
            .map(str::trim)
            .find_map(|d| d.strip_prefix(name).map(str::trim))
            .unwrap_or_else(|| panic!("{name} in {csp}"))
    }

    #[test]
    fn the_header_hashes_the_script_in_the_page() {
        for page in [PAGE, CAMPAIGN_PAGE] {
            the_header_hashes_the_script_of(page);
        }
    }

    fn the_header_hashes_the_script_of(page: &str) {
        let csp = content_security_policy(page);
        let scripts = inline_elements(page, "script");
        assert_eq!(scripts.len(), 1, "one inline script");
        assert!(
            scripts[0].contains("function refresh()"),
            "the dashboard's script"
        );
        assert_eq!(
            directive(&csp, "script-src"),
            format!("'sha256-{}'", sha256_base64(scripts[0]))
        );
        let styles = inline_elements(page, "style");
        assert_eq!(styles.len(), 1);
        assert_eq!(
            directive(&csp, "style-src"),
            format!("'sha256-{}'", sha256_base64(styles[0]))
        );
        for (name, value) in [
            ("default-src", "'none'"),
            ("base-uri", "'none'"),
            ("frame-ancestors", "'none'"),
            ("object-src", "'none'"),
            ("connect-src", "'self'"),
            ("form-action", "'self'"),
        ] {
            assert_eq!(directive(&csp, name), value, "{csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        // No inline style attributes: the policy would block them.
        assert!(!page.contains("style="), "no style attributes");
    }

    #[test]
    fn the_hash_is_the_browsers_sha256_of_the_element_text() {
        // `printf 'alert(1)' | openssl dgst -sha256 -binary | base64`
        assert_eq!(
            sha256_base64("alert(1)"),
            "bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI="
        );
        let page = "<p>x</p><script>alert(1)</script><script>b()</script>";
        assert_eq!(inline_elements(page, "script"), vec!["alert(1)", "b()"]);
        let csp = content_security_policy(page);
        assert!(
            directive(&csp, "script-src")
                .starts_with("'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI=' 'sha256-"),
            "{csp}"
        );
        assert_eq!(directive(&csp, "style-src"), "'none'");
    }

    #[test]
    fn the_login_page_is_covered_by_its_own_hashes() {
        let page = login_page(Some("<b>bad</b>"));
        assert!(page.contains("&lt;b&gt;bad&lt;/b&gt;"));
        let csp = content_security_policy(&page);
        assert_eq!(directive(&csp, "script-src"), "'none'");
        assert_eq!(
            directive(&csp, "style-src"),
            format!(
                "'sha256-{}'",
                sha256_base64(inline_elements(&page, "style")[0])
            )
        );
    }
}
