// brisk web UI: polls the REST API of the job that serves it, once a
// second. Everything here is served by the job itself; nothing is fetched
// from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const fmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
const colors = ["#2f6fdf", "#e07b00", "#2b8a3e", "#9c36b5", "#c2372b", "#0b7285"];

function number(n) {
  if (n === null || n === undefined) return "–";
  if (Math.abs(n) >= 1e9) return fmt.format(n / 1e9) + " G";
  if (Math.abs(n) >= 1e6) return fmt.format(n / 1e6) + " M";
  if (Math.abs(n) >= 1e4) return fmt.format(n / 1e3) + " k";
  return fmt.format(n);
}

function bytes(n) {
  if (n >= 1 << 30) return fmt.format(n / (1 << 30)) + " GiB";
  if (n >= 1 << 20) return fmt.format(n / (1 << 20)) + " MiB";
  if (n >= 1 << 10) return fmt.format(n / (1 << 10)) + " KiB";
  return n + " B";
}

function duration(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function time(ms) {
  return new Date(ms).toLocaleTimeString();
}

async function get(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

function el(tag, attrs, text) {
  const e = document.createElementNS(tag === "svg" || attrs.svg ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const [k, v] of Object.entries(attrs)) if (k !== "svg") e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// Columns by longest path from a source; rows in id order.
function layout(nodes) {
  const depth = new Map();
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const d = (n) => {
    if (depth.has(n.id)) return depth.get(n.id);
    const v = n.inputs.length === 0 ? 0 : 1 + Math.max(...n.inputs.map((i) => d(byId.get(i.from))));
    depth.set(n.id, v);
    return v;
  };
  nodes.forEach(d);
  const rows = new Map();
  const pos = new Map();
  for (const n of nodes) {
    const c = depth.get(n.id);
    const r = rows.get(c) || 0;
    rows.set(c, r + 1);
    pos.set(n.id, { x: 10 + c * 200, y: 10 + r * 80 });
  }
  return { pos, height: 20 + Math.max(...rows.values()) * 80 };
}

function drawGraph(graph, operators) {
  const svg = $("graph");
  svg.replaceChildren();
  const defs = el("defs", { svg: true });
  const marker = el("marker", { svg: true, id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" });
  marker.appendChild(el("path", { svg: true, d: "M0,0 L10,5 L0,10 z", fill: "#6b7385" }));
  defs.appendChild(marker);
  svg.appendChild(defs);
  const { pos, height } = layout(graph.nodes);
  svg.style.height = height + "px";
  const ops = new Map(operators.map((o) => [o.id, o]));
  for (const n of graph.nodes) {
    for (const i of n.inputs) {
      const a = pos.get(i.from), b = pos.get(n.id);
      svg.appendChild(el("path", { svg: true, d: `M${a.x + 160},${a.y + 31} C${a.x + 180},${a.y + 31} ${b.x - 20},${b.y + 31} ${b.x},${b.y + 31}` }));
      if (i.partitioning !== "Forward") {
        svg.appendChild(el("text", { svg: true, class: "edge-label", x: (a.x + 160 + b.x) / 2 - 15, y: (a.y + b.y) / 2 + 20 }, i.partitioning.toUpperCase()));
      }
    }
  }
  for (const n of graph.nodes) {
    const p = pos.get(n.id);
    const g = el("g", { svg: true, class: "node", "data-id": n.id });
    g.appendChild(el("rect", { svg: true, x: p.x, y: p.y, width: 160, height: 62 }));
    g.appendChild(el("text", { svg: true, x: p.x + 8, y: p.y + 17 }, n.name.length > 24 ? n.name.slice(0, 23) + "…" : n.name));
    const o = ops.get(n.id);
    const rate = o && o.rates_per_s.records_out !== undefined ? number(o.rates_per_s.records_out) + "/s" : "";
    const bp = o ? Math.max(0, ...o.per_core.map((c) => c.backpressured_ratio || 0)) : 0;
    if (bp > 0.5) g.setAttribute("class", "node backpressured");
    const wm = o && o.watermark !== null ? " wm " + o.watermark : "";
    g.appendChild(el("text", { svg: true, class: "sub", x: p.x + 8, y: p.y + 32 }, `${n.kind} ×${n.parallelism}${n.chained ? " (chained)" : ""}`));
    g.appendChild(el("text", { svg: true, class: "sub", x: p.x + 8, y: p.y + 45 }, rate + wm));
    if (o) g.appendChild(el("text", { svg: true, class: "sub", x: p.x + 8, y: p.y + 58 }, `in ${number(o.records_in)} · out ${number(o.records_out)}`));
    svg.appendChild(g);
  }
}

function drawThroughput(graph, operators) {
  const sources = new Set(graph.nodes.filter((n) => n.is_source).map((n) => n.id));
  const series = operators.filter((o) => sources.has(o.id) && o.rate_history.records_out).map((o) => ({ name: o.name, values: o.rate_history.records_out }));
  drawSeries($("throughput"), series, (v) => number(v) + "/s");
}

function drawLatency(lat) {
  const series = lat.sinks.map((s) => ({ name: s.sink, values: s.p99_history_us.map((us) => us / 1000) }));
  drawSeries($("latency-chart"), series, (v) => fmt.format(v) + " ms");
  const body = $("latency").tBodies[0];
  if (lat.sinks.length === 0) return;
  body.replaceChildren();
  const ms = (us) => fmt.format(us / 1000) + " ms";
  for (const s of lat.sinks) {
    const tr = el("tr", {});
    tr.appendChild(el("td", {}, s.sink));
    tr.appendChild(el("td", { class: "num" }, number(s.count)));
    for (const v of [s.p50_us, s.p99_us, s.p999_us, s.max_us]) tr.appendChild(el("td", { class: "num" }, ms(v)));
    body.appendChild(tr);
  }
}

// One line per series, newest at the right edge, one point per second.
function drawSeries(canvas, series, label) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(1e-9, ...series.flatMap((s) => s.values));
  ctx.font = "11px system-ui";
  ctx.fillStyle = "#6b7385";
  ctx.fillText(label(max), 4, 12);
  series.forEach((s, k) => {
    ctx.strokeStyle = colors[k % colors.length];
    ctx.beginPath();
    const n = s.values.length;
    s.values.forEach((v, i) => {
      const x = w - (n - 1 - i) * (w / 300);
      const y = h - 4 - (v / max) * (h - 20);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    ctx.fillStyle = colors[k % colors.length];
    ctx.fillText(s.name, 60 + k * 140, 12);
  });
}

function fillOperators(operators) {
  const body = $("operators").tBodies[0];
  body.replaceChildren();
  for (const o of operators) {
    for (const c of o.per_core) {
      const shown = ["core", "records_in", "records_received", "records_out", "watermark", "busy_ratio", "backpressured_ratio", "idle_ratio", "input_queue_batches", "input_queue_capacity", "busy_ns", "backpressured_ns", "idle_ns", "exchange_received"];
      const other = Object.entries(c).filter(([k]) => !shown.includes(k) && !k.startsWith("exchange_sent_to_core_")).map(([k, v]) => `${k} ${number(v)}`).join(", ");
      const pct = (v) => (v === undefined ? "–" : Math.round(v * 100) + "%");
      const tr = el("tr", {});
      tr.appendChild(el("td", {}, o.name));
      tr.appendChild(el("td", { class: "num" }, c.core));
      tr.appendChild(el("td", { class: "num" }, number(c.records_in)));
      tr.appendChild(el("td", { class: "num" }, number(c.records_out)));
      tr.appendChild(el("td", { class: "num" }, c.core === o.per_core[0].core && o.rates_per_s.records_out !== undefined ? number(o.rates_per_s.records_out) : ""));
      tr.appendChild(el("td", { class: "num" }, c.watermark === null || c.watermark === undefined ? "–" : c.watermark));
      tr.appendChild(el("td", { class: "num" }, pct(c.busy_ratio)));
      tr.appendChild(el("td", { class: "num" + (c.backpressured_ratio > 0.5 ? " hot" : "") }, pct(c.backpressured_ratio)));
      tr.appendChild(el("td", { class: "num" }, pct(c.idle_ratio)));
      tr.appendChild(el("td", { class: "num" }, c.input_queue_capacity ? `${c.input_queue_batches}/${c.input_queue_capacity}` : "–"));
      tr.appendChild(el("td", {}, other));
      body.appendChild(tr);
    }
  }
}

function fillCheckpoints(cp) {
  $("checkpoint-count").textContent = `${cp.completed} ok, ${cp.failed} failed`;
  const body = $("checkpoints").tBodies[0];
  body.replaceChildren();
  for (const c of cp.history.slice(0, 20)) {
    const tr = el("tr", {});
    tr.appendChild(el("td", { class: "num" }, c.id));
    tr.appendChild(el("td", { class: c.status }, c.status + (c.savepoint ? " (savepoint)" : "")));
    tr.appendChild(el("td", {}, time(c.triggered_ms)));
    tr.appendChild(el("td", { class: "num" }, c.duration_ms + " ms"));
    tr.appendChild(el("td", { class: "num" }, bytes(c.bytes)));
    tr.appendChild(el("td", { class: "num" }, bytes(c.full_bytes)));
    tr.appendChild(el("td", { class: "num" }, fmt.format(c.sync_us / 1000) + " ms"));
    tr.appendChild(el("td", { class: "num" }, fmt.format(c.alignment_us / 1000) + " ms"));
    tr.appendChild(el("td", {}, c.reason || ""));
    body.appendChild(tr);
  }
}

function fillExceptions(ex) {
  const ul = $("exceptions");
  ul.replaceChildren();
  if (ex.exceptions.length === 0) ul.appendChild(el("li", { class: "none" }, "none"));
  for (const e of ex.exceptions) ul.appendChild(el("li", {}, time(e.time_ms) + "  " + e.message));
}

async function refresh() {
  try {
    const [overview, graph, ops, cps, ex, lat] = await Promise.all([
      get("/api/overview"), get("/api/graph"), get("/api/operators"), get("/api/checkpoints"), get("/api/exceptions"),
      get("/api/latency"),
    ]);
    $("job-name").textContent = overview.name;
    $("job-state").textContent = overview.state;
    $("job-state").className = "state " + overview.state;
    $("cores").textContent = overview.cores;
    $("uptime").textContent = duration(overview.uptime_ms);
    $("records").textContent = number(overview.records_from_sources);
    $("rate").textContent = number(overview.source_rate_per_s) + "/s";
    $("restarts").textContent = overview.restarts;
    // Only once the monitor's queue overflowed: what this page shows may miss events.
    $("dropped").textContent = number(overview.monitor_messages_dropped);
    $("dropped-figure").hidden = !(overview.monitor_messages_dropped > 0);
    // Log backend only: what the cores' state holds against their budgets,
    // marked when what eviction cannot free is over a core's budget.
    const sm = overview.state_memory;
    $("state-memory-figure").hidden = !sm;
    if (sm) {
      $("state-memory").textContent = bytes(sm.used_bytes) + " / " + bytes(sm.budget_bytes);
      $("state-memory-figure").classList.toggle("over", sm.cores_over_budget > 0);
      $("state-memory-figure").title = sm.cores_over_budget > 0
        ? sm.cores_over_budget + " core(s) over budget: " + bytes(sm.unevictable_bytes) +
          " of index, timers and unwritten segments cannot be evicted; raise state_memory_budget_bytes"
        : "";
    }
    drawGraph(graph, ops.operators);
    drawThroughput(graph, ops.operators);
    drawLatency(lat);
    fillOperators(ops.operators);
    fillCheckpoints(cps);
    fillExceptions(ex);
    document.body.dataset.loaded = "true";
  } catch (e) {
    $("message").textContent = "cannot reach the job: " + e.message;
  }
}

async function action(path, confirmText) {
  if (confirmText && !window.confirm(confirmText)) return;
  const headers = { "Content-Type": "application/json" };
  const token = $("token").value;
  if (token) headers["Authorization"] = "Bearer " + token;
  $("message").textContent = path + " …";
  try {
    const r = await fetch(path, { method: "POST", headers, body: "{}" });
    const body = await r.json();
    $("message").textContent = r.ok ? path + ": " + JSON.stringify(body) : path + " failed: " + (body.error || r.status);
  } catch (e) {
    $("message").textContent = path + " failed: " + e.message;
  }
}

$("savepoint").addEventListener("click", () => action("/api/savepoint"));
$("stop").addEventListener("click", () => action("/api/stop", "Stop the job with a savepoint?"));
$("cancel").addEventListener("click", () => action("/api/cancel", "Cancel the job? Its output since the last checkpoint is not committed."));
refresh();
setInterval(refresh, 1000);
