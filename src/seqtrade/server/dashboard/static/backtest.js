// seqtrade backtest page: the progress and results of the backtest the server runs (/api/backtest),
// the same results as results.json; equity curves with the vendored uPlot. Read-only: it only GETs.
// It asks once a second while the backtest runs and stops asking once it has finished.
"use strict";

const $ = (s) => document.querySelector(s);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const num = (x, d = 2) => (x === null || x === undefined) ? "–" : x.toFixed(d);
const cls = (x) => (x > 0 ? "pos" : x < 0 ? "neg" : "");
const COLORS = ["#111", "#0969da", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#cf222e", "#0550ae"];

function cell(key, value, text, c = "") {
  const v = value === null || value === undefined ? "" : esc(value);
  return `<td class="${c}" data-k="${key}" data-v="${v}">${esc(text)}</td>`;
}

function row(name, s) {
  return `<tr data-strategy="${esc(name)}"><td data-k="strategy" data-v="${esc(name)}"><b>${esc(name)}</b></td>` +
    cell("realised_pnl", s.realised_pnl, num(s.realised_pnl), cls(s.realised_pnl)) +
    cell("unrealised_pnl", s.unrealised_pnl, num(s.unrealised_pnl), cls(s.unrealised_pnl)) +
    cell("fees", s.fees, num(s.fees, 4)) +
    cell("funding", s.funding, num(s.funding, 4)) +
    cell("net_pnl", s.net_pnl, num(s.net_pnl), cls(s.net_pnl)) +
    cell("fills", s.fills, String(s.fills)) +
    cell("trades", s.trades, String(s.trades)) +
    cell("win_rate", s.win_rate, s.win_rate === null ? "–" : (100 * s.win_rate).toFixed(1) + "%") +
    cell("max_drawdown", s.max_drawdown, num(s.max_drawdown)) +
    cell("exposure", s.exposure, (100 * s.exposure).toFixed(1) + "%") +
    cell("max_notional", s.max_notional, num(s.max_notional)) +
    cell("sharpe", s.sharpe, num(s.sharpe)) + "</tr>";
}

let plot = null, plotKey = "";
function equity(curves) {
  // curves: {name: [[ns, equity], ...]} -> one uPlot over the union of times, each curve held (step)
  const names = Object.keys(curves);
  const ts = [...new Set(names.flatMap((n) => curves[n].map((p) => p[0])))].sort((a, b) => a - b);
  const at = new Map(ts.map((t, i) => [t, i]));
  const data = [ts.map((t) => t / 1e9)];
  for (const n of names) {
    const col = new Array(ts.length).fill(null);
    for (const [t, v] of curves[n]) col[at.get(t)] = v;
    let last = null;
    for (let i = 0; i < col.length; i++) { if (col[i] === null) col[i] = last; else last = col[i]; }
    data.push(col);
  }
  const key = names.join(",");
  if (!ts.length) { $("#equity").innerHTML = '<p class="note">no equity yet</p>'; plot = null; plotKey = ""; return; }
  if (plot && plotKey === key) { plot.setData(data); return; }
  $("#equity").innerHTML = "";
  const series = [{}, ...names.map((n, i) => ({ label: n, stroke: COLORS[i % COLORS.length], width: i ? 1 : 2, points: { show: false } }))];
  plot = new uPlot({ width: Math.max($("#equity").clientWidth || 900, 300), height: 280, series,
    scales: { x: { time: true } }, axes: [{}, { size: 70 }] }, data, $("#equity"));
  plotKey = key;
}

function render(doc) {
  const r = doc.results;
  $("#progress").innerHTML = `<span data-k="state" data-v="${esc(doc.state)}">${esc(doc.state)}</span>: ` +
    `<span data-k="pct" data-v="${doc.pct}">${doc.pct.toFixed(1)}%</span> (${doc.done.toLocaleString()} of ${doc.total.toLocaleString()} recorded rows)`;
  const names = Object.keys(r.strategies).sort();
  $("#results tbody").innerHTML = names.map((n) => row(n, r.strategies[n])).join("") + row("account", r.account);
  if (typeof uPlot !== "undefined") {
    const curves = { account: r.account.equity };
    for (const n of names) curves[n] = r.strategies[n].equity;
    equity(curves);
  }
}

async function poll() {
  let finished = false;
  try {
    const resp = await fetch("api/backtest", { cache: "no-store" });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const doc = await resp.json();
    if (doc.state === "none") { $("#progress").textContent = "the server is not running a backtest"; return; }
    render(doc);
    finished = doc.state === "finished";
  } catch (e) {
    $("#progress").textContent = "offline (" + e.message + "): retrying";
  }
  if (!finished) setTimeout(poll, 1000);
}

poll();
