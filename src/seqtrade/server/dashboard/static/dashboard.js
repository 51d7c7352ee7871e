// seqtrade dashboard: live state over server-sent events (/api/events), charts with the vendored uPlot.
// Read-only: it only ever GETs. Cells carry their raw value in data-v (tests and copy-paste read it).
"use strict";

const $ = (s) => document.querySelector(s);
const fmt = (x, d = 6) => (x === null || x === undefined) ? "–" : (typeof x === "number" ? +x.toPrecision(d) + "" : String(x));
const money = (x) => (x === null || x === undefined) ? "–" : x.toFixed(2);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const sign = (x) => (x > 0 ? "pos" : x < 0 ? "neg" : "");
const time = (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 23);

function td(value, text, cls = "", key = "") {
  const v = value === null || value === undefined ? "" : esc(value);
  return `<td class="${cls}"${key ? ` data-k="${key}"` : ""} data-v="${v}">${esc(text)}</td>`;
}

function setRows(table, html) {
  const body = $(table + " tbody");
  if (body.innerHTML !== html) body.innerHTML = html;
}

const PANELS = {
  venue(v) {
    const t = v.trading, c = v.counters;
    const own = Object.entries(t.strategies).map(([s, st]) => `${s} ${st}`).join("; ");
    $("#venue").innerHTML =
      `venue <b data-k="venue">${esc(v.name)}</b>: <span class="${v.connected ? "pos" : "neg"}" data-k="connected">${v.connected ? "connected" : "DISCONNECTED"}</span>` +
      (v.reconnects !== null ? ` | reconnects ${v.reconnects}` : "") +
      ` | orders ${c.orders_in} in, ${c.orders_sent} sent, ${c.rejected} rejected | reports ${c.reports_out}` +
      ` | trading <b data-k="trading">${esc(t.global)}</b>${own ? " (" + esc(own) + ")" : ""}` +
      ` | cancel-all-after <span data-k="caa">${v.cancel_all_after ? v.cancel_all_after + " s, kept armed" : "off"}</span>` +
      ` | journal commit ${v.journal_commit_ms.toFixed(2)} ms`;
  },
  strategies(rows) {
    let html = "";
    for (const s of rows) {
      const books = s.books.length ? s.books : [null];
      books.forEach((b, i) => {
        const first = i === 0;
        const proc = s.supervised ? `${s.supervised.state}${s.supervised.restarts ? " ↻" + s.supervised.restarts : ""}` : "external";
        const err = s.last_error ? s.last_error.message : (Object.keys(s.callback_errors).length ? "callbacks: " + JSON.stringify(s.callback_errors) : "");
        html += `<tr data-strategy="${esc(s.id)}"${b ? ` data-book="${esc(s.id)}|${esc(b.symbol)}"` : ""}>` +
          (first ? td(s.id, s.id, "l", "id") + td(s.alive, s.alive ? "yes" : (s.left ? "left" : "NO"), s.alive ? "pos" : "neg", "alive") +
            td(s.heartbeat_age, s.heartbeat_age === null || s.heartbeat_age === undefined ? "–" : s.heartbeat_age.toFixed(1) + " s", "", "heartbeat") +
            td(proc, proc, "", "process") + td(s.trading, s.trading, "", "trading")
            : `<td></td><td></td><td></td><td></td><td></td>`) +
          (b ? td(b.symbol, b.symbol, "l", "symbol") + td(b.position, fmt(b.position), sign(b.position), "position") +
            td(b.avg_price, fmt(b.avg_price), "", "avg_price") + td(b.mark, fmt(b.mark), "dim", "mark") +
            td(b.realized_pnl, money(b.realized_pnl), sign(b.realized_pnl), "realized_pnl") +
            td(b.unrealized_pnl, money(b.unrealized_pnl), sign(b.unrealized_pnl), "unrealized_pnl") +
            td(b.fees, b.fees.toFixed(4), "", "fees") +
            td(b.realized_pnl - b.fees + b.unrealized_pnl, money(b.realized_pnl - b.fees + b.unrealized_pnl), sign(b.realized_pnl - b.fees + b.unrealized_pnl), "net")
            : `<td class="dim">no fills</td><td></td><td></td><td></td><td></td><td></td><td></td><td></td>`) +
          (first ? td(s.open_orders, s.open_orders, "", "open_orders") + `<td class="err" title="${esc(err)}" data-k="last_error">${esc(err)}</td>` : `<td></td><td></td>`) +
          "</tr>";
      });
    }
    setRows("#strategies", html);
  },
  account(a) {
    setRows("#reconciliation", a.reconciliation.map((r) =>
      `<tr class="${r.differs ? "bad" : ""}" data-symbol="${esc(r.symbol)}">` + td(r.symbol, r.symbol, "l") + td(r.venue, fmt(r.venue), "", "venue") +
      td(r.strategies, fmt(r.strategies), "", "strategies") + td(r.external, fmt(r.external), r.differs ? "neg" : "", "external") + "</tr>").join(""));
  },
  feeds(rows) {
    setRows("#feeds", rows.map((f) => `<tr data-topic="${esc(f.topic)}">` + td(f.topic, f.topic, "l") + td(f.rate, f.rate.toFixed(1), "", "rate") +
      td(f.seq, f.seq, "", "seq") + td(f.last_update_age_s, f.last_update_age_s.toFixed(1) + " s", f.last_update_age_s > 10 ? "neg" : "", "age") +
      td(f.venue_age_s, f.venue_age_s === null ? "–" : f.venue_age_s.toFixed(1) + " s", "", "venue_age") + "</tr>").join(""));
  },
  feed_health(rows) {
    const ms = (x) => (x === null || x === undefined) ? "–" : x.toFixed(1) + " ms";
    setRows("#feed-health", rows.map((f) => `<tr data-feed="${esc(f.channel)}/${esc(f.symbol)}" class="${f.stale ? "bad" : ""}">` +
      td(f.channel + " " + f.symbol, f.channel + " " + f.symbol, "l") + td(f.rate, fmt(f.rate, 3), "", "rate") +
      td(f.age, f.age === null ? "–" : f.age.toFixed(1) + " s", "", "age") + td(f.delay_ms, ms(f.delay_ms), "", "delay_ms") +
      td(f.max_delay_ms, ms(f.max_delay_ms), "", "max_delay_ms") + td(f.gaps, f.gaps, f.gaps ? "neg" : "", "gaps") +
      td(f.resubscriptions, f.resubscriptions, "", "resubscriptions") + td(f.stale, f.stale ? "STALE" : "ok", f.stale ? "neg" : "pos", "stale") + "</tr>").join(""));
  },
  latency(l) {
    hist("#hist-ack", l.order_ack, "#ack-q");
    hist("#hist-tick", l.tick_delay, "#tick-q");
  },
  rejections(r) {
    const rows = Object.entries(r);
    setRows("#rejections", rows.length ? rows.map(([k, n]) => `<tr data-rule="${esc(k)}">` + td(k, k, "l") + td(n, n, "neg", "count") + "</tr>").join("")
      : `<tr><td class="dim">none</td><td></td></tr>`);
  },
  open_orders(rows) {
    setRows("#open-orders", rows.map((o) => `<tr data-order="${esc(o.strategy)}:${esc(o.client_order_id)}">` + td(o.strategy, o.strategy, "l") +
      td(o.client_order_id, o.client_order_id) + td(o.symbol, o.symbol) + td(o.side, o.side, o.side === "buy" ? "pos" : "neg") + td(o.order_type, o.order_type) +
      td(o.price, fmt(o.price)) + td(o.quantity, fmt(o.quantity)) + td(o.filled, fmt(o.filled)) + td(o.status, o.status) + "</tr>").join(""));
  },
  fills(rows) {
    setRows("#fills", rows.map(fillRow).join(""));
  },
};

function fillRow(f) {
  return `<tr data-fill="${esc(f.strategy)}:${f.seq}">` + td(f.ts, time(f.ts), "l") + td(f.strategy, f.strategy) + td(f.client_order_id, f.client_order_id) +
    td(f.symbol, f.symbol) + td(f.side, f.side, f.side === "buy" ? "pos" : "neg") + td(f.quantity, fmt(f.quantity), "", "quantity") +
    td(f.price, fmt(f.price), "", "price") + td(f.status, f.status) + td(f.fee, fmt(f.fee, 4)) + "</tr>";
}

// Panels the page has no renderer for (added by a newer server): shown as tables of their JSON.
function generic(name, data) {
  let sec = document.getElementById("panel-" + name);
  if (!sec) {
    sec = document.createElement("section");
    sec.id = "panel-" + name;
    sec.className = "wide";
    $("#more").before(sec);
  }
  const rows = Array.isArray(data) ? data : Object.entries(data).map(([k, v]) => ({ key: k, value: v }));
  const cols = [...new Set(rows.flatMap((r) => (r && typeof r === "object") ? Object.keys(r) : ["value"]))];
  sec.innerHTML = `<h2>${esc(name)}</h2><table><thead><tr>${cols.map((c) => `<th>${esc(c)}</th>`).join("")}</tr></thead><tbody>` +
    rows.map((r) => "<tr>" + cols.map((c) => { const v = (r && typeof r === "object") ? r[c] : r; return td(typeof v === "object" ? JSON.stringify(v) : v, typeof v === "object" ? JSON.stringify(v) : fmt(v)); }).join("") + "</tr>").join("") +
    "</tbody></table>";
}

// ------------------------------------------------------------------ charts (uPlot)

const charts = {};
function chart(id, opts, data) {
  const el = $(id);
  const w = Math.max(el.clientWidth || 520, 300);
  const key = id + "|" + opts.series.map((s) => s.label).join(",");
  if (!charts[key]) {
    el.innerHTML = "";
    for (const k of Object.keys(charts)) if (k.startsWith(id + "|")) delete charts[k];
    charts[key] = new uPlot({ width: w, height: opts.height || 200, ...opts }, data, el);
  } else {
    charts[key].setData(data);
  }
}

const COLORS = ["#0969da", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#cf222e", "#0550ae", "#6e7781"];

function hist(id, h, noteId) {
  const labels = h.bounds_ms.map((b) => "≤" + b).concat([">" + h.bounds_ms[h.bounds_ms.length - 1]]);
  const xs = labels.map((_, i) => i);
  chart(id, {
    height: 150, legend: { show: false }, scales: { x: { time: false } },
    axes: [{ values: (u, vals) => vals.map((v) => labels[v] || "") , label: "ms" }, {}],
    series: [{}, { label: "count", fill: "rgba(9,105,218,.35)", stroke: "#0969da", paths: uPlot.paths.bars({ size: [0.8] }), points: { show: false } }],
  }, [xs, h.counts]);
  $(noteId).textContent = h.count ? `n=${h.count}, mean ${h.mean_ms.toFixed(2)} ms, p50 ≤ ${h.p50_ms ?? ">10000"} ms, p99 ≤ ${h.p99_ms ?? ">10000"} ms` : "no samples yet";
}

function lines(id, named, height) {
  // named: {label: {t:[], v:[], marks:[]}} -> one uPlot over the union of times (nulls elsewhere)
  const labels = Object.keys(named);
  if (!labels.length) { $(id).innerHTML = '<p class="note">nothing yet</p>'; for (const k of Object.keys(charts)) if (k.startsWith(id + "|")) delete charts[k]; return; }
  const ts = [...new Set(labels.flatMap((l) => named[l].t))].sort((a, b) => a - b);
  const index = new Map(ts.map((t, i) => [t, i]));
  const data = [ts];
  const series = [{}];
  labels.forEach((l, i) => {
    const col = new Array(ts.length).fill(null);
    const s = named[l];
    s.t.forEach((t, j) => { col[index.get(t)] = s.v[j]; });
    data.push(col);
    series.push({ label: l, stroke: COLORS[i % COLORS.length], spanGaps: true, points: { show: (u, si, i0, i1) => (i1 - i0) < 200 } });
  });
  chart(id, { height: height || 200, series, scales: { x: { time: true } }, axes: [{}, { size: 60 }] }, data);
}

function priceCharts(prices) {
  const box = $("#prices");
  for (const [sym, s] of Object.entries(prices)) {
    const id = "price-" + sym.replace(/[^A-Za-z0-9_-]/g, "_");
    if (!document.getElementById(id)) {
      const d = document.createElement("div");
      d.id = id; d.className = "chart small";
      d.innerHTML = "";
      const h = document.createElement("h3"); h.textContent = sym; h.className = "note";
      box.append(h, d);
    }
    // The mid once a second, with buys and sells at their fill prices on their own series.
    const ts = [...new Set(s.t.concat((s.fills || []).map((f) => f.t)))].sort((a, b) => a - b);
    const at = new Map(ts.map((t, i) => [t, i]));
    const mid = new Array(ts.length).fill(null), buy = new Array(ts.length).fill(null), sell = new Array(ts.length).fill(null);
    s.t.forEach((t, j) => { mid[at.get(t)] = s.v[j]; });
    for (const f of s.fills || []) (f.side === "buy" ? buy : sell)[at.get(f.t)] = f.price;
    chart("#" + id, {
      height: 160, scales: { x: { time: true } }, axes: [{}, { size: 70 }],
      series: [{}, { label: "mid", stroke: "#6e7781", spanGaps: true, points: { show: false } },
        { label: "buys", stroke: "#1a7f37", paths: () => null, points: { show: true, size: 8, fill: "#1a7f37" } },
        { label: "sells", stroke: "#cf222e", paths: () => null, points: { show: true, size: 8, fill: "#cf222e" } }],
    }, [ts, mid, buy, sell]);
  }
}

// The series: taken whole once (api/series), then each "series" event appends what they gained.
let SER = null;
let fetching = false;
const CAP = 4000; // points kept per series in the page (the oldest go)

async function fetchSeries() {
  if (fetching) return;
  fetching = true;
  try {
    const r = await fetch("api/series");
    const j = await r.json();
    if (j.data && j.data.error) { console.error("series", j.data.error); return; }
    SER = { version: j.version, ...j.data };
    for (const p of Object.values(SER.prices)) p.keys = new Set((p.fills || []).map((f) => f.key));
    renderSeries();
  } finally {
    fetching = false;
  }
}

function append(into, add) {
  const last = into.t.length ? into.t[into.t.length - 1] : -Infinity;
  add.t.forEach((t, i) => {
    if (t <= last) return; // already there (the whole series was taken after these were added)
    into.t.push(t); into.v.push(add.v[i]); if (into.marks) into.marks.push(add.marks[i]);
  });
  if (into.t.length > CAP) for (const k of ["t", "v", "marks"]) if (into[k]) into[k].splice(0, into.t.length - CAP);
}

function onSeries(m) {
  if (fetching) return;
  if (!SER || m.delta === null || (m.delta && m.delta.error) || m.from !== SER.version) { fetchSeries(); return; }
  for (const group of ["equity", "prices", "reconciliation"]) {
    for (const [key, add] of Object.entries(m.delta[group])) {
      const into = SER[group][key] || (SER[group][key] = { t: [], v: [], marks: [], fills: [], keys: new Set() });
      append(into, add);
      for (const f of add.fills || []) {
        if (!into.keys) into.keys = new Set();
        if (into.keys.has(f.key)) continue;
        into.keys.add(f.key);
        (into.fills || (into.fills = [])).push(f);
      }
      if (into.fills && into.fills.length > 500) into.fills.splice(0, into.fills.length - 500);
    }
  }
  SER.version = m.version;
  renderSeries();
}

function renderSeries() {
  if (typeof uPlot === "undefined" || !SER) return;
  lines("#equity", SER.equity, 220);
  priceCharts(SER.prices);
  lines("#recon-chart", SER.reconciliation, 140);
}

// ------------------------------------------------------------------ live updates

let lastState = null;
function renderState(st) {
  lastState = st;
  for (const [name, data] of Object.entries(st.panels)) {
    try {
      if (data && data.error && !Array.isArray(data) && Object.keys(data).length === 1) { generic(name, data); continue; }
      (PANELS[name] || ((d) => generic(name, d)))(data);
    } catch (e) {
      console.error("panel", name, e);
    }
  }
  document.body.dataset.version = st.version;
  $("#live").textContent = "live · " + time(st.now_ms);
}

function connect() {
  const es = new EventSource("api/events");
  es.addEventListener("state", (e) => { $("#live").className = "ok"; renderState(JSON.parse(e.data)); });
  es.addEventListener("series", (e) => onSeries(JSON.parse(e.data)));
  es.onerror = () => { $("#live").className = "stale"; $("#live").textContent = "reconnecting…"; };
}

// ------------------------------------------------------------------ the journal (paginated, filtered)

let page = 1;
let journalLoads = 0;  // the newest load wins: an older answer arriving late never overwrites it
async function loadJournal() {
  const mine = ++journalLoads;
  const f = new FormData($("#journal-form"));
  const q = new URLSearchParams();
  for (const k of ["strategy", "symbol"]) if (f.get(k)) q.set(k, f.get(k));
  for (const k of ["since", "until"]) if (f.get(k)) q.set(k, String(Date.parse(f.get(k) + "Z")));
  q.set("page", page);
  q.set("per_page", 25);
  const kind = f.get("kind");
  const r = await fetch(`api/${kind}?${q}`);
  const body = await r.json();
  if (mine !== journalLoads) return;
  const table = $("#journal-table");
  if (!r.ok) { table.tBodies[0].innerHTML = `<tr><td class="err">${esc(body.error)}</td></tr>`; return; }
  const pages = Math.max(1, Math.ceil(body.total / body.per_page));
  $("#page").textContent = `page ${body.page} of ${pages} (${body.total})`;
  $("#page").dataset.total = body.total;
  if (kind === "fills") {
    table.tHead.innerHTML = "<tr><th>time</th><th>strategy</th><th>id</th><th>symbol</th><th>side</th><th>qty</th><th>price</th><th>status</th><th>fee (order)</th></tr>";
    table.tBodies[0].innerHTML = body.items.map(fillRow).join("");
  } else {
    table.tHead.innerHTML = "<tr><th>created</th><th>strategy</th><th>id</th><th>symbol</th><th>side</th><th>type</th><th>price</th><th>qty</th><th>filled</th><th>avg</th><th>status</th><th>error</th></tr>";
    table.tBodies[0].innerHTML = body.items.map((o) => `<tr data-order="${esc(o.strategy)}:${esc(o.client_order_id)}">` + td(o.created_ms, time(o.created_ms), "l") + td(o.strategy, o.strategy) +
      td(o.client_order_id, o.client_order_id) + td(o.symbol, o.symbol) + td(o.side, o.side) + td(o.order_type, o.order_type) + td(o.price, fmt(o.price)) +
      td(o.quantity, fmt(o.quantity)) + td(o.filled, fmt(o.filled)) + td(o.avg_price, fmt(o.avg_price)) + td(o.status, o.status) +
      `<td class="err">${esc(o.error)}</td></tr>`).join("");
  }
  $("#prev").disabled = body.page <= 1;
  $("#next").disabled = body.page >= pages;
  table.dataset.query = q.toString();  // which filter the rows answer (tests wait on it)
  table.dataset.loaded = kind + ":" + body.page;
}

document.addEventListener("DOMContentLoaded", () => {
  $("#journal-form").addEventListener("submit", (e) => { e.preventDefault(); page = 1; loadJournal(); });
  $("#prev").addEventListener("click", () => { if (page > 1) { page--; loadJournal(); } });
  $("#next").addEventListener("click", () => { page++; loadJournal(); });
  connect();
  loadJournal();
});
